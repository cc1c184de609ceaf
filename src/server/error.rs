//! The one mapping from errors to answers: a [`GatewayError`] becomes an HTTP status
//! with a stable code and a JSON body `{"error": {"code", "message"}}` ([`ApiError`]),
//! or, on `/mcp`, a JSON-RPC error ([`rpc_rejection`] before a request runs,
//! [`rpc_answer`] as the answer to one). Refusals of the `/mcp` transport itself
//! (headers, body framing) are [`Rejected`]. Nothing outside this file builds an
//! error body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::AuthError;
use crate::gateway::GatewayError;
use crate::protocol::jsonrpc::{self, code};
use crate::store::StoreError;
use crate::telemetry::Metrics;
use crate::telemetry::events::{Emit, Refusal};
use crate::upstream::UpstreamError;

/// JSON-RPC code for gateway-level failures (implementation-defined range).
pub const GATEWAY_ERROR: i64 = -32000;

/// Seconds a client is told to wait on a 503.
const RETRY_AFTER_SECS: u32 = 1;

/// An error answer of the HTTP API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds for `Retry-After` on 503.
    retry_after: Option<u32>,
    /// Extra JSON merged into the error object (the MCP server's own error, for instance).
    detail: Option<serde_json::Value>,
    /// What a bearer-token challenge says about this refusal (auth mode `oauth` renders it
    /// as `WWW-Authenticate`).
    challenge: Option<Challenge>,
}

/// The parameters of a `WWW-Authenticate: Bearer` challenge (RFC 6750, RFC 9728) that an
/// authentication failure carries, as a response extension. `guard.rs` writes the header in
/// auth mode `oauth`, where it knows the protected resource metadata's URL; other modes
/// leave it unsent.
#[derive(Debug, Clone)]
pub struct Challenge {
    /// `invalid_token`, `insufficient_scope`; none when no token was presented.
    pub error: Option<&'static str>,
    /// A sentence for a person.
    pub description: Option<String>,
    /// The scopes the request needs.
    pub scope: Option<String>,
}

impl Challenge {
    /// The failure's challenge, if it is one of authentication.
    fn of(e: &AuthError) -> Option<Self> {
        match e {
            AuthError::Missing => Some(Self { error: None, description: None, scope: None }),
            AuthError::InvalidToken(why) => {
                Some(Self { error: Some("invalid_token"), description: Some(why.clone()), scope: None })
            }
            AuthError::Invalid => Some(Self {
                error: Some("invalid_token"),
                description: Some("the credentials were refused".into()),
                scope: None,
            }),
            AuthError::InsufficientScope { scope } => Some(Self {
                error: Some("insufficient_scope"),
                description: Some(format!("this request needs the scopes: {scope}")),
                scope: Some(scope.clone()),
            }),
            AuthError::Malformed(_) | AuthError::Unavailable(_) => None,
        }
    }

    /// The header value, with `resource_metadata` (RFC 9728) and the scopes to ask for
    /// when the refusal names none (`default_scope`).
    pub fn header(&self, resource_metadata: &str, default_scope: &str) -> String {
        let mut value = format!("Bearer resource_metadata=\"{}\"", quoted(resource_metadata));
        let scope = self.scope.as_deref().unwrap_or(default_scope);
        if !scope.is_empty() {
            value.push_str(&format!(", scope=\"{}\"", quoted(scope)));
        }
        if let Some(error) = self.error {
            value.push_str(&format!(", error=\"{error}\""));
        }
        if let Some(description) = &self.description {
            value.push_str(&format!(", error_description=\"{}\"", quoted(description)));
        }
        value
    }
}

/// Text fit for an HTTP quoted-string: printable ASCII without `"` and `\\`.
fn quoted(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else if c == ' ' {
                ' '
            } else {
                '?'
            }
        })
        .collect()
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None, detail: None, challenge: None }
    }

    /// No route matches the request.
    pub fn no_route() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    }

    /// The route exists but not for this method; `allow` lists the methods it answers.
    pub fn method_not_allowed(allow: &str) -> Self {
        let message = if allow.is_empty() {
            "this route does not answer this method (the Allow header lists those it does)".to_owned()
        } else {
            format!("this route answers {allow} only")
        };
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", message)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The same failure as a JSON-RPC error response (`/mcp`), with the same status.
    fn into_rpc(self, id: &str) -> Response {
        let mut response = rpc_response(self.status, id, GATEWAY_ERROR, &self.message);
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(challenge) = self.challenge {
            response.extensions_mut().insert(challenge);
        }
        response
    }
}

/// The mapping: status, code, message and extras of every gateway failure.
impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        let code = e.code();
        let status = match &e {
            GatewayError::BadRequest(_)
            | GatewayError::MissingSessionId
            | GatewayError::ClientTooLarge(_) => StatusCode::BAD_REQUEST,
            GatewayError::BodyTooLarge(_)
            | GatewayError::StateTooLarge(_)
            | GatewayError::CredentialsTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::SessionQuota(_) | GatewayError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::SessionNotFound | GatewayError::UnknownTool(_) => StatusCode::NOT_FOUND,
            GatewayError::ToolDenied(_) => StatusCode::FORBIDDEN,
            GatewayError::Contention | GatewayError::RngUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::SealFailed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            GatewayError::CredentialsUnreadable(_) => StatusCode::UNAUTHORIZED,
            GatewayError::Auth(e) => auth_status(e),
            GatewayError::Store(e) => return store_error(e, code),
            GatewayError::Upstream(e) => return upstream_error(e, code),
        };
        let retry_after = match e {
            GatewayError::Contention | GatewayError::SessionQuota(_) => Some(RETRY_AFTER_SECS),
            GatewayError::RateLimited(secs) => Some(secs.max(1)),
            _ => None,
        };
        let challenge = match &e {
            GatewayError::Auth(auth) => Challenge::of(auth),
            _ => None,
        };
        Self { retry_after, challenge, ..Self::new(status, code, e.to_string()) }
    }
}

fn auth_status(e: &AuthError) -> StatusCode {
    match e {
        AuthError::Malformed(_) => StatusCode::BAD_REQUEST,
        AuthError::Invalid | AuthError::Missing | AuthError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
        AuthError::InsufficientScope { .. } => StatusCode::FORBIDDEN,
        AuthError::Unavailable(_) => StatusCode::BAD_GATEWAY,
    }
}

/// Store failures say nothing of the store's internals (they are logged and counted
/// where they happen, at the store boundary).
fn store_error(e: &StoreError, code: &'static str) -> ApiError {
    match e {
        StoreError::Unavailable(_) | StoreError::Full => ApiError {
            retry_after: Some(RETRY_AFTER_SECS),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                code,
                "the session store is unavailable; retry shortly",
            )
        },
        StoreError::Corrupt(_) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, code, "the stored session is unreadable")
        }
        // A newer worker wrote it (a rollout in progress): another worker may serve it now,
        // and nginx retries a 503 on the next one.
        StoreError::VersionSkew { .. } => ApiError {
            retry_after: Some(RETRY_AFTER_SECS),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                code,
                "the stored session needs a newer worker version; retry shortly",
            )
        },
    }
}

fn upstream_error(e: &UpstreamError, code: &'static str) -> ApiError {
    let status = match e {
        UpstreamError::Saturated => StatusCode::SERVICE_UNAVAILABLE,
        UpstreamError::UnknownServer(_) => StatusCode::NOT_FOUND,
        UpstreamError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        UpstreamError::TooLarge { .. }
        | UpstreamError::Spawn { .. }
        | UpstreamError::Exited
        | UpstreamError::Protocol(_)
        | UpstreamError::InitRefused(_)
        | UpstreamError::Rpc(_) => StatusCode::BAD_GATEWAY,
    };
    match e {
        UpstreamError::Saturated => {
            ApiError { retry_after: Some(RETRY_AFTER_SECS), ..ApiError::new(status, code, e.to_string()) }
        }
        UpstreamError::Rpc(raw) => {
            let detail: serde_json::Value =
                serde_json::from_str(raw.get()).unwrap_or(serde_json::Value::Null);
            let rpc_code = detail.get("code").and_then(serde_json::Value::as_i64).unwrap_or(0);
            let text = detail.get("message").and_then(|m| m.as_str()).unwrap_or("error").to_string();
            // Bad method or params are the caller's mistake (an unknown tool, say).
            let status = if (code::INVALID_PARAMS..=code::INVALID_REQUEST).contains(&rpc_code) {
                StatusCode::BAD_REQUEST
            } else {
                status
            };
            ApiError {
                detail: Some(serde_json::json!({ "mcp_error": detail })),
                ..ApiError::new(status, code, format!("the MCP server answered: {text}"))
            }
        }
        _ => ApiError::new(status, code, e.to_string()),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = serde_json::json!({ "code": self.code, "message": self.message });
        if let (Some(serde_json::Value::Object(extra)), Some(obj)) = (self.detail, error.as_object_mut()) {
            obj.extend(extra);
        }
        let body = serde_json::json!({ "error": error }).to_string();
        let mut response = (self.status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(challenge) = self.challenge {
            response.extensions_mut().insert(challenge);
        }
        response
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

/// A JSON-RPC error response with an HTTP status.
fn rpc_response(status: StatusCode, id: &str, code: i64, message: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], jsonrpc::error_response(id, code, message))
        .into_response()
}

/// `/mcp`: a failure before the request ran (no session, refused credentials, store
/// down…): the status, `Retry-After` and message of the HTTP mapping, as JSON-RPC.
pub fn rpc_rejection(id: &str, e: GatewayError) -> Response {
    ApiError::from(e).into_rpc(id)
}

/// `/mcp`: the JSON-RPC error line answering a request that failed. The MCP server's own
/// error passes through untouched; the caller's mistakes are `-32602`; anything else is
/// `-32000` with the message of the HTTP mapping.
pub fn rpc_error_line(id: &str, e: GatewayError) -> String {
    match e {
        GatewayError::Upstream(UpstreamError::Rpc(error)) => {
            format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{}}}"#, error.get())
        }
        GatewayError::BadRequest(_)
        | GatewayError::SessionNotFound
        | GatewayError::UnknownTool(_)
        | GatewayError::ToolDenied(_) => jsonrpc::error_response(id, code::INVALID_PARAMS, &e.to_string()),
        e => jsonrpc::error_response(id, GATEWAY_ERROR, &ApiError::from(e).message),
    }
}

/// `/mcp`: the JSON-RPC error line of a request not run because a bound was reached (a
/// batch's answer budget); `message` names the limit.
pub fn rpc_limit_line(id: &str, message: &str) -> String {
    jsonrpc::error_response(id, GATEWAY_ERROR, message)
}

/// `/mcp`: the answer to a request that failed before anything was streamed: `200` with
/// the error line, except a saturated worker, which is `503` with `Retry-After`.
pub fn rpc_answer(id: &str, e: GatewayError) -> Response {
    if matches!(e, GatewayError::Auth(_)) {
        // A refused token (or one short of a scope) is the HTTP status and its challenge,
        // so the client can act on it (authorize again, step up).
        return rpc_rejection(id, e);
    }
    if matches!(e, GatewayError::Upstream(UpstreamError::Saturated)) {
        let mut response =
            rpc_response(StatusCode::SERVICE_UNAVAILABLE, id, GATEWAY_ERROR, "worker saturated; retry");
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        return response;
    }
    json(StatusCode::OK, rpc_error_line(id, e))
}

/// A JSON body with a status.
pub fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// What the `/mcp` transport refuses before the gateway sees a request.
#[derive(Debug)]
pub enum Rejected {
    /// `Origin` is neither loopback nor allowed.
    Origin,
    /// `Host` is neither loopback nor allowed, on a loopback listener.
    Host,
    /// `Accept` lacks one of the two types a client must take.
    NotAcceptable,
    /// `MCP-Protocol-Version` names a version not supported.
    ProtocolVersion { asked: String, supported: String },
    /// `Content-Type` is not JSON.
    MediaType,
    /// The body is over the limit.
    BodyTooLarge(usize),
    /// The body cannot be read or is not JSON (`-32700`).
    Parse(String),
    /// JSON, but not a JSON-RPC message (`-32600`).
    Invalid(&'static str),
    /// `initialize` on a session.
    AlreadyInitialized,
    /// A request other than `initialize` without a session id.
    NoSession,
    /// A batch from a session that did not negotiate 2025-03-26.
    Batch,
    /// A batch of more messages than `max_batch_items` (the limit).
    BatchTooLarge(usize),
    /// `initialize` with capabilities too large or too deep (what is wrong, naming the limit).
    Capabilities(String),
}

impl Rejected {
    fn reason(&self) -> Refusal {
        match self {
            Self::Origin => Refusal::Origin,
            Self::Host => Refusal::Host,
            Self::NotAcceptable => Refusal::NotAcceptable,
            Self::ProtocolVersion { .. } => Refusal::ProtocolVersion,
            Self::MediaType => Refusal::MediaType,
            Self::BodyTooLarge(_) => Refusal::BodyTooLarge,
            Self::Parse(_) | Self::Invalid(_) => Refusal::Malformed,
            Self::AlreadyInitialized | Self::NoSession => Refusal::SessionHeader,
            Self::Batch | Self::BatchTooLarge(_) => Refusal::Batch,
            Self::Capabilities(_) => Refusal::Malformed,
        }
    }

    /// Status, JSON-RPC code and message.
    fn answer(&self) -> (StatusCode, i64, String) {
        let bad = StatusCode::BAD_REQUEST;
        match self {
            Self::Origin => (StatusCode::FORBIDDEN, GATEWAY_ERROR, "Forbidden: invalid Origin header".into()),
            Self::Host => (
                StatusCode::MISDIRECTED_REQUEST,
                GATEWAY_ERROR,
                "Misdirected Request: invalid Host header".into(),
            ),
            Self::NotAcceptable => (
                StatusCode::NOT_ACCEPTABLE,
                GATEWAY_ERROR,
                "Not Acceptable: Client must accept both application/json and text/event-stream".into(),
            ),
            Self::ProtocolVersion { asked, supported } => (
                bad,
                GATEWAY_ERROR,
                format!("Bad Request: unsupported protocol version {asked} (supported: {supported})"),
            ),
            Self::MediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                GATEWAY_ERROR,
                "Unsupported Media Type: Content-Type must be application/json".into(),
            ),
            Self::BodyTooLarge(limit) => {
                (StatusCode::PAYLOAD_TOO_LARGE, GATEWAY_ERROR, GatewayError::BodyTooLarge(*limit).to_string())
            }
            Self::Parse(message) => (bad, code::PARSE_ERROR, message.clone()),
            Self::Invalid(message) => (bad, code::INVALID_REQUEST, (*message).into()),
            Self::AlreadyInitialized => {
                (bad, code::INVALID_REQUEST, "Bad Request: already initialized".into())
            }
            Self::NoSession => (
                bad,
                code::INVALID_REQUEST,
                "Bad Request: no Mcp-Session-Id header; send initialize first".into(),
            ),
            Self::Batch => (
                bad,
                code::INVALID_REQUEST,
                "Invalid Request: batches are only allowed for protocol version 2025-03-26".into(),
            ),
            Self::BatchTooLarge(max) => (
                bad,
                code::INVALID_REQUEST,
                format!("Invalid Request: a batch may hold at most {max} messages (max_batch_items)"),
            ),
            Self::Capabilities(problem) => (bad, code::INVALID_PARAMS, format!("Invalid params: {problem}")),
        }
    }

    /// The refusal, counted and logged, as an error of the HTTP API (`{"error": …}`): the
    /// same status and message as on `/mcp`, for every other route.
    pub fn respond_api(self, metrics: &Metrics) -> Response {
        self.reason().emit(metrics);
        let code = match &self {
            Self::Origin => "origin_not_allowed",
            Self::Host => "host_not_allowed",
            Self::MediaType => "unsupported_media_type",
            Self::BodyTooLarge(_) => "body_too_large",
            _ => "bad_request",
        };
        let (status, _, message) = self.answer();
        ApiError::new(status, code, message).into_response()
    }

    /// The refusal, counted and logged, as a JSON-RPC error response for request `id`.
    pub fn respond(self, metrics: &Metrics, id: &str) -> Response {
        self.reason().emit(metrics);
        let (status, code, message) = self.answer();
        rpc_response(status, id, code, &message)
    }
}
