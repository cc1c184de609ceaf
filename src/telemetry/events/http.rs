//! The HTTP edge: requests completed, requests refused before they reach the gateway.

use std::time::Duration;

use super::{Emit, Metrics};

/// A request answered (any status), by matched route.
#[derive(Debug)]
pub struct RequestCompleted<'a> {
    /// The matched route pattern (`/mcp`, `unmatched`), never the raw path.
    pub route: &'a str,
    pub status: u16,
    pub elapsed: Duration,
}

impl Emit for RequestCompleted<'_> {
    fn emit(self, metrics: &Metrics) {
        tracing::debug!(status = self.status, elapsed_ms = self.elapsed.as_secs_f64() * 1e3, "request done");
        metrics.request(self.route, self.status, self.elapsed);
    }
}

/// Why a request was refused: by the transport before the gateway saw it, or by the
/// gateway's per-principal limits (the `reason` label of `switchboard_refusals_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `Origin` not loopback nor allowed (DNS rebinding protection).
    Origin,
    /// `Host` not loopback nor allowed, on a loopback listener.
    Host,
    /// `Accept` lacks `application/json` or `text/event-stream`.
    NotAcceptable,
    /// `MCP-Protocol-Version` names a version the gateway does not speak.
    ProtocolVersion,
    /// `Content-Type` is not JSON.
    MediaType,
    /// The body is over `max_body_bytes`.
    BodyTooLarge,
    /// The body is not JSON, not UTF-8, or not JSON-RPC.
    Malformed,
    /// A request that needs a session came without one, or `initialize` with one.
    SessionHeader,
    /// A batch on a session that did not negotiate 2025-03-26.
    Batch,
    /// A principal at its session quota, with no session of its own to end for room.
    SessionQuota,
    /// A principal over its request rate.
    RateLimited,
    /// `credentials` over `limits.max_credentials_bytes`.
    CredentialsTooLarge,
    /// `client` (or `clientInfo` and `capabilities`) over `limits.max_client_bytes`.
    ClientTooLarge,
}

impl Refusal {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Origin => "origin",
            Self::Host => "host",
            Self::NotAcceptable => "not_acceptable",
            Self::ProtocolVersion => "protocol_version",
            Self::MediaType => "media_type",
            Self::BodyTooLarge => "body_too_large",
            Self::Malformed => "malformed",
            Self::SessionHeader => "session_header",
            Self::Batch => "batch",
            Self::SessionQuota => "session_quota",
            Self::RateLimited => "rate_limited",
            Self::CredentialsTooLarge => "credentials_too_large",
            Self::ClientTooLarge => "client_too_large",
        }
    }
}

impl Emit for Refusal {
    fn emit(self, metrics: &Metrics) {
        tracing::debug!(reason = self.as_str(), "request refused");
        metrics.refused(self.as_str());
    }
}

/// What the connection layer did to a client connection (the `reason` label of
/// `switchboard_http_connection_events_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// Closed: a request's headers did not arrive within `http.header_read_timeout_secs`.
    HeaderTimeout,
    /// Closed: no request for `http.idle_timeout_secs`.
    IdleTimeout,
    /// Closed unserved: the worker was at `http.max_connections` for the whole queue wait.
    OverLimit,
    /// `accept` failed (out of file descriptors, most often); the accept loop backs off.
    AcceptFailed,
}

impl ConnectionEvent {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HeaderTimeout => "header_timeout",
            Self::IdleTimeout => "idle_timeout",
            Self::OverLimit => "over_limit",
            Self::AcceptFailed => "accept_failed",
        }
    }
}

/// Counted only: the accept loop logs refusals and accept failures itself, rate-limited,
/// since an attacker decides how often they happen.
impl Emit for ConnectionEvent {
    fn emit(self, metrics: &Metrics) {
        tracing::debug!(reason = self.as_str(), "connection event");
        metrics.connection_event(self.as_str());
    }
}
