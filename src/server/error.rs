//! The one mapping from errors to an HTTP status and a JSON body
//! `{"error": {"code", "message"}}` with a stable, machine-readable code.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::AuthError;
use crate::store::StoreError;
use crate::upstream::UpstreamError;

/// An error answer of the HTTP API.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for `Retry-After` on 503.
    pub retry_after: Option<u32>,
    /// Extra JSON merged into the error object (the MCP server's own error, for instance).
    pub detail: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None, detail: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn session_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "session_not_found",
            "no such session: it expired, was deleted or never existed; initialize a new one",
        )
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body exceeds {limit} bytes"),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) | StoreError::Full => {
                tracing::warn!(error = %e, "session store failed");
                Self {
                    retry_after: Some(1),
                    ..Self::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "store_unavailable",
                        "the session store is unavailable; retry shortly",
                    )
                }
            }
            StoreError::Corrupt(_) => {
                tracing::error!(error = %e, "unreadable session record");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "store_corrupt",
                    "the stored session is unreadable",
                )
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Malformed(_) => Self::new(StatusCode::BAD_REQUEST, "bad_credentials", e.to_string()),
            AuthError::Invalid => Self::new(StatusCode::UNAUTHORIZED, "invalid_credentials", e.to_string()),
            AuthError::Unavailable(_) => {
                Self::new(StatusCode::BAD_GATEWAY, "auth_unavailable", e.to_string())
            }
        }
    }
}

/// Status and stable code of an upstream failure: the one place they are decided.
pub fn upstream_status(e: &UpstreamError) -> (StatusCode, &'static str) {
    match e {
        UpstreamError::Saturated => (StatusCode::SERVICE_UNAVAILABLE, "saturated"),
        UpstreamError::UnknownServer(_) => (StatusCode::NOT_FOUND, "unknown_server"),
        UpstreamError::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
        UpstreamError::TooLarge { .. } => (StatusCode::BAD_GATEWAY, "result_too_large"),
        UpstreamError::Spawn(_) => (StatusCode::BAD_GATEWAY, "upstream_spawn_failed"),
        UpstreamError::Exited => (StatusCode::BAD_GATEWAY, "upstream_exited"),
        UpstreamError::Protocol(_) => (StatusCode::BAD_GATEWAY, "upstream_protocol"),
        UpstreamError::Rpc(_) => (StatusCode::BAD_GATEWAY, "mcp_error"),
    }
}

impl From<UpstreamError> for ApiError {
    fn from(e: UpstreamError) -> Self {
        let message = e.to_string();
        let (status, code) = upstream_status(&e);
        match e {
            UpstreamError::Saturated => Self { retry_after: Some(1), ..Self::new(status, code, message) },
            UpstreamError::Rpc(raw) => {
                let detail: serde_json::Value =
                    serde_json::from_str(raw.get()).unwrap_or(serde_json::Value::Null);
                let rpc_code = detail.get("code").and_then(serde_json::Value::as_i64).unwrap_or(0);
                let text = detail.get("message").and_then(|m| m.as_str()).unwrap_or("error").to_string();
                // Bad method or params are the caller's mistake (an unknown tool, say).
                let status =
                    if (-32602..=-32600).contains(&rpc_code) { StatusCode::BAD_REQUEST } else { status };
                Self {
                    detail: Some(serde_json::json!({ "mcp_error": detail })),
                    ..Self::new(status, code, format!("the MCP server answered: {text}"))
                }
            }
            _ => Self::new(status, code, message),
        }
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
        response
    }
}
