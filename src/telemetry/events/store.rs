//! Events of the session store boundary. A store implementation emits
//! [`StoreFailed`] at the one place where a failure leaves it, so every failed
//! operation is logged once and counted once, with the same labels on Redis and
//! on the embedded store. Callers above the store do not log or count it again.

use std::fmt::Display;

use crate::session::SessionId;
use crate::telemetry::Metrics;

/// The store operation that failed: one per method of the store's trait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreOp {
    Create,
    Admit,
    TakeToken,
    Load,
    LoadWithCache,
    CacheGet,
    CachePut,
    LogActivity,
    TryLock,
    Unlock,
    ReplaceState,
    SetField,
    Delete,
    GetShared,
    PutShared,
    Publish,
    Subscribe,
    Ping,
}

impl StoreOp {
    /// The metric label and log field.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreOp::Create => "create",
            StoreOp::Admit => "admit",
            StoreOp::TakeToken => "take_token",
            StoreOp::Load => "load",
            StoreOp::LoadWithCache => "load_with_cache",
            StoreOp::CacheGet => "cache_get",
            StoreOp::CachePut => "cache_put",
            StoreOp::LogActivity => "log_activity",
            StoreOp::TryLock => "try_lock",
            StoreOp::Unlock => "unlock",
            StoreOp::ReplaceState => "replace_state",
            StoreOp::SetField => "set_field",
            StoreOp::Delete => "delete",
            StoreOp::GetShared => "get_shared",
            StoreOp::PutShared => "put_shared",
            StoreOp::Publish => "publish",
            StoreOp::Subscribe => "subscribe",
            StoreOp::Ping => "ping",
        }
    }
}

/// Why an operation failed, as an operator tells outages apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreErrorKind {
    /// The store did not answer in time.
    Timeout,
    /// No connection: refused, dropped, or any other I/O failure.
    Connection,
    /// The store answered with an error (out of memory, read-only replica, a script error).
    Rejected,
    /// The embedded store holds as many sessions as it may.
    Full,
    /// A stored value cannot be read, or a value to store is malformed.
    Corrupt,
    /// A stored record needs a newer worker (its `compat` is above this worker's).
    VersionSkew,
}

impl StoreErrorKind {
    /// The metric label and log field.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreErrorKind::Timeout => "timeout",
            StoreErrorKind::Connection => "connection",
            StoreErrorKind::Rejected => "rejected",
            StoreErrorKind::Full => "full",
            StoreErrorKind::Corrupt => "corrupt",
            StoreErrorKind::VersionSkew => "version_skew",
        }
    }
}

/// A store operation failed.
pub struct StoreFailed<'a> {
    pub op: StoreOp,
    pub kind: StoreErrorKind,
    /// The session concerned, if any; logged by its redacted `Debug` form (a prefix only).
    pub session: Option<&'a SessionId>,
    /// The error the caller gets. Its text never holds a password or a credential:
    /// Redis error texts carry no URL, and record errors name only the field.
    pub error: &'a dyn Display,
}

impl StoreFailed<'_> {
    /// Logs one line and counts `store_failures{op, kind}`.
    pub fn emit(&self, metrics: &Metrics) {
        let (op, kind, error) = (self.op.as_str(), self.kind.as_str(), self.error);
        let session = self.session.map(tracing::field::debug);
        if self.kind == StoreErrorKind::Corrupt {
            tracing::error!(op, kind, session, error = %error, "session store operation failed");
        } else {
            tracing::warn!(op, kind, session, error = %error, "session store operation failed");
        }
        metrics.store_failed(op, kind);
    }
}

/// A kind of value kept in the store, each with its own versioning rule (deploy/README.md,
/// "Rolling upgrades across versions").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoredKind {
    /// A session's hash (`schema`/`compat` fields).
    Session,
    /// A result-cache entry (`expires|result`).
    CacheEntry,
    /// A shared tool list or `initialize` answer (JSON).
    Shared,
    /// A pub/sub message between workers (JSON, or a bare hash).
    Message,
}

impl StoredKind {
    /// The metric label and log field.
    pub fn as_str(self) -> &'static str {
        match self {
            StoredKind::Session => "session",
            StoredKind::CacheEntry => "cache_entry",
            StoredKind::Shared => "shared",
            StoredKind::Message => "message",
        }
    }
}

/// Why a stored value could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnreadableReason {
    /// Written by a newer version for newer readers only.
    VersionSkew,
    /// Not in any format this version knows.
    Malformed,
}

impl UnreadableReason {
    /// The metric label and log field.
    pub fn as_str(self) -> &'static str {
        match self {
            UnreadableReason::VersionSkew => "version_skew",
            UnreadableReason::Malformed => "malformed",
        }
    }
}

/// A stored value this worker could not read: a session is refused (and left as it is), a
/// cache entry or tool list is a miss, a message is dropped; never a crash or a wrong answer.
pub struct RecordUnreadable<'a> {
    pub kind: StoredKind,
    pub reason: UnreadableReason,
    /// The session concerned, if any (logged by its redacted `Debug` form).
    pub session: Option<&'a SessionId>,
}

impl RecordUnreadable<'_> {
    /// Logs one line and counts `store_unreadable{kind, reason}`.
    pub fn emit(&self, metrics: &Metrics) {
        let (kind, reason) = (self.kind.as_str(), self.reason.as_str());
        let session = self.session.map(tracing::field::debug);
        tracing::warn!(kind, reason, session, "a stored value could not be read");
        metrics.store_unreadable(kind, reason);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn a_failure_is_counted_under_its_operation_and_kind() {
        let metrics = Metrics::new();
        let id = SessionId::generate().expect("random id");
        let error = "connection refused";
        for _ in 0..2 {
            StoreFailed {
                op: StoreOp::Load,
                kind: StoreErrorKind::Connection,
                session: Some(&id),
                error: &error,
            }
            .emit(&metrics);
        }
        StoreFailed { op: StoreOp::Ping, kind: StoreErrorKind::Timeout, session: None, error: &error }
            .emit(&metrics);
        let text = metrics.render();
        assert!(
            text.contains(r#"switchboard_store_failures_total{op="load",kind="connection"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"switchboard_store_failures_total{op="ping",kind="timeout"} 1"#), "{text}");
        assert!(!text.contains(id.as_str()), "no session id in metrics");
    }

    #[test]
    fn the_log_line_names_operation_and_kind_and_only_a_prefix_of_the_session() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let subscriber =
            tracing_subscriber::fmt().with_writer(move || Line(sink.clone())).with_ansi(false).finish();
        let id = SessionId::generate().expect("random id");
        tracing::subscriber::with_default(subscriber, || {
            let failed = StoreFailed {
                op: StoreOp::ReplaceState,
                kind: StoreErrorKind::Corrupt,
                session: Some(&id),
                error: &"state: expected value",
            };
            failed.emit(&Metrics::new());
        });
        let text = String::from_utf8(lines.lock().expect("log buffer").clone()).expect("utf-8 log");
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains("ERROR")
                && text.contains("op=\"replace_state\"")
                && text.contains("kind=\"corrupt\""),
            "{text}"
        );
        assert!(text.contains(&id.as_str()[..8]) && !text.contains(id.as_str()), "{text}");
    }

    #[test]
    fn unreadable_values_are_counted_by_kind_and_reason() {
        let metrics = Metrics::new();
        let id = SessionId::generate().expect("random id");
        let reason = UnreadableReason::VersionSkew;
        RecordUnreadable { kind: StoredKind::Session, reason, session: Some(&id) }.emit(&metrics);
        let reason = UnreadableReason::Malformed;
        RecordUnreadable { kind: StoredKind::Message, reason, session: None }.emit(&metrics);
        let text = metrics.render();
        assert!(
            text.contains(r#"switchboard_store_unreadable_total{kind="session",reason="version_skew"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"switchboard_store_unreadable_total{kind="message",reason="malformed"} 1"#),
            "{text}"
        );
        assert!(!text.contains(id.as_str()), "no session id in metrics");
    }

    /// A log writer into a shared buffer.
    struct Line(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Line {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_err(|_| std::io::ErrorKind::Other)?.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
