//! [`GatewayError`]: every way a request can fail in the application layer, each
//! variant saying what the client should understand. `server::error` maps it, in
//! one place, to an HTTP status with a stable code and to a JSON-RPC error.

use crate::auth::AuthError;
use crate::store::StoreError;
use crate::upstream::UpstreamError;

/// Why the gateway could not do what a request asked.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request itself is malformed (a bad field, a body that is not JSON).
    #[error("{0}")]
    BadRequest(String),
    /// The body is larger than `max_body_bytes`.
    #[error("request body exceeds {0} bytes")]
    BodyTooLarge(usize),
    /// A route that needs a session was called without an id.
    #[error("send the session id in the Mcp-Session-Id header (POST /init creates one)")]
    MissingSessionId,
    /// No such session: expired, deleted, never existed, or another principal's.
    #[error("no such session: it expired, was deleted or never existed; initialize a new one")]
    SessionNotFound,
    /// No configured server offers a tool by this name.
    #[error("no server offers a tool named `{0}`")]
    UnknownTool(String),
    /// The tool exists but the gateway's allow/deny lists hide it.
    #[error("the tool `{0}` is not offered by this gateway")]
    ToolDenied(String),
    /// A merge patch would grow the session's state past `max_state_bytes`.
    #[error("the session state would exceed {0} bytes")]
    StateTooLarge(usize),
    /// The `credentials` object is larger than `limits.max_credentials_bytes`.
    #[error("credentials exceed the limit of {0} bytes (limits.max_credentials_bytes)")]
    CredentialsTooLarge(usize),
    /// The `client` object is larger than `limits.max_client_bytes`.
    #[error("the client object exceeds the limit of {0} bytes (limits.max_client_bytes)")]
    ClientTooLarge(usize),
    /// The principal is at its session quota and no session of its own could be ended to
    /// make room (concurrent creations kept taking it): retry.
    #[error("too many sessions of these credentials are being created at once (limit {0}); retry")]
    SessionQuota(usize),
    /// The principal made more requests than `limits.requests_per_sec` allows.
    #[error("too many requests for these credentials; retry in {0} s")]
    RateLimited(u32),
    /// Every compare-and-set attempt lost to another writer: retry.
    #[error("too many concurrent writers to this session; retry")]
    Contention,
    /// The OS random source failed (no session id could be made).
    #[error("the OS random source failed")]
    RngUnavailable,
    /// The credentials could not be sealed for storage.
    #[error("{0}")]
    SealFailed(String),
    /// This worker cannot open the session's sealed credentials.
    #[error("{0}")]
    CredentialsUnreadable(&'static str),
    /// The credentials check refused or failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The session store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The MCP server failed, or said no.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

impl GatewayError {
    /// The stable, machine-readable code of this failure (in HTTP error bodies and in
    /// the session's activity log).
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::BodyTooLarge(_) => "body_too_large",
            Self::MissingSessionId => "missing_session_id",
            Self::SessionNotFound => "session_not_found",
            Self::UnknownTool(_) => "unknown_tool",
            Self::ToolDenied(_) => "tool_denied",
            Self::StateTooLarge(_) => "state_too_large",
            Self::Contention => "contention",
            Self::CredentialsTooLarge(_) => "credentials_too_large",
            Self::ClientTooLarge(_) => "client_too_large",
            Self::SessionQuota(_) => "session_quota",
            Self::RateLimited(_) => "rate_limited",
            Self::RngUnavailable => "rng_unavailable",
            Self::SealFailed(_) => "seal_failed",
            Self::CredentialsUnreadable(_) => "credentials_unreadable",
            Self::Auth(AuthError::Missing) => "missing_credentials",
            Self::Auth(AuthError::Malformed(_)) => "bad_credentials",
            Self::Auth(AuthError::Invalid) => "invalid_credentials",
            Self::Auth(AuthError::Unavailable(_)) => "auth_unavailable",
            Self::Auth(AuthError::InvalidToken(_)) => "invalid_token",
            Self::Auth(AuthError::InsufficientScope { .. }) => "insufficient_scope",
            Self::Store(StoreError::Unavailable(_) | StoreError::Full) => "store_unavailable",
            Self::Store(StoreError::Corrupt(_)) => "store_corrupt",
            Self::Store(StoreError::VersionSkew { .. }) => "store_version_skew",
            Self::Upstream(e) => upstream_code(e),
        }
    }

    /// The stored credentials cannot be opened with this worker's keys.
    pub(crate) fn key_mismatch() -> Self {
        Self::CredentialsUnreadable(
            "this session's credentials cannot be opened by this worker (secret key mismatch); initialize a new session",
        )
    }
}

/// The stable code of an upstream failure.
fn upstream_code(e: &UpstreamError) -> &'static str {
    match e {
        UpstreamError::Saturated => "saturated",
        UpstreamError::UnknownServer(_) => "unknown_server",
        UpstreamError::Timeout { .. } => "upstream_timeout",
        UpstreamError::TooLarge { .. } => "result_too_large",
        UpstreamError::Spawn { .. } => "upstream_spawn_failed",
        UpstreamError::Exited => "upstream_exited",
        UpstreamError::Protocol(_) => "upstream_protocol",
        UpstreamError::Rpc(_) => "mcp_error",
        UpstreamError::InitRefused(_) => "upstream_init_refused",
    }
}
