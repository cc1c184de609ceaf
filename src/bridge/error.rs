//! The bridge's two error types: [`BridgeError`], fatal and returned by
//! [`super::run`]; and [`GatewayError`], the failure of one call to the gateway,
//! which becomes either an `isError: true` tool result (something the user or the
//! model should read: gateway down, timed out, credentials refused) or a JSON-RPC
//! error (a protocol problem: bad parameters, a malformed gateway answer).
//!
//! Messages here are shown to users; they never contain credentials.

use std::time::Duration;

use serde_json::value::RawValue;

use super::jsonrpc;
use crate::protocol::jsonrpc::code;

/// Fatal errors: the bridge cannot start or cannot talk to its host any more.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// `SWITCHBOARD_CREDENTIALS` is set but is not JSON (the value is not shown).
    #[error("SWITCHBOARD_CREDENTIALS is not valid JSON ({0})")]
    CredentialsNotJson(#[source] serde_json::Error),
    /// `SWITCHBOARD_CREDENTIALS` is JSON but not an object.
    #[error("SWITCHBOARD_CREDENTIALS must be a JSON object")]
    CredentialsNotObject,
    /// `--url` is not an `http://` or `https://` URL.
    #[error("invalid gateway URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The HTTP client could not be built (TLS set-up).
    #[error("could not set up the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// Reading stdin failed (other than EOF, which ends the bridge normally).
    #[error("reading stdin failed: {0}")]
    Stdin(#[source] std::io::Error),
    /// Writing stdout failed: the host is gone.
    #[error("writing stdout failed: {0}")]
    Stdout(#[source] std::io::Error),
}

/// One failed exchange with the gateway.
#[derive(Debug, Clone)]
pub(crate) enum GatewayError {
    /// No TCP connection (refused, DNS, reset before an answer).
    Unreachable { url: String, detail: String },
    /// No answer (or, on SSE, no event) within the per-call timeout.
    TimedOut { after: Duration },
    /// 401/403: the gateway does not accept the credentials.
    Refused { message: String, no_credentials: bool },
    /// 404 even on a freshly opened session: most likely a wrong `--url`.
    SessionLost { message: String },
    /// 400/413: the gateway rejected the request itself (a protocol problem).
    BadRequest { status: u16, message: String },
    /// Any other non-success status (429, 502, 503, 504, …).
    Status { status: u16, code: String, message: String, retry_after: Option<u64> },
    /// The gateway answered with something the bridge cannot use.
    Protocol(String),
    /// The gateway answered with a JSON-RPC error object: passed to the host as is.
    JsonRpc(Box<RawValue>),
}

impl GatewayError {
    /// A readable sentence for the user (the text of an `isError` result).
    pub(crate) fn user_message(&self) -> String {
        match self {
            Self::Unreachable { url, detail } => format!(
                "The switchboard gateway at {url} is unreachable ({detail}). \
                 Check that it is running; the next call will try again."
            ),
            Self::TimedOut { after } => format!(
                "The switchboard gateway did not answer within {} s; the call was abandoned.",
                after.as_secs_f64()
            ),
            Self::Refused { message, no_credentials } => {
                let mut text = format!("The switchboard gateway refused the credentials: {message}");
                if *no_credentials {
                    text.push_str(
                        " No credentials are configured: set SWITCHBOARD_TOKEN or \
                         SWITCHBOARD_CREDENTIALS in the bridge's environment \
                         (the \"env\" block of claude_desktop_config.json).",
                    );
                }
                text
            }
            Self::SessionLost { message } => format!(
                "The switchboard gateway lost the session again right after opening it \
                 ({message}); check the bridge's --url."
            ),
            Self::BadRequest { status, message } => {
                format!("The switchboard gateway rejected the request (HTTP {status}): {message}")
            }
            Self::Status { status, code, message, retry_after } => {
                let what = match status {
                    429 => "The switchboard gateway is rate limiting this session".to_owned(),
                    502 => "The tool's MCP server failed".to_owned(),
                    503 => "The switchboard gateway is temporarily unavailable".to_owned(),
                    504 => "The tool call timed out in the switchboard gateway".to_owned(),
                    _ => format!("The switchboard gateway answered HTTP {status}"),
                };
                let mut text = format!("{what}: {message}");
                if !code.is_empty() {
                    text.push_str(&format!(" [{code}]"));
                }
                if let Some(secs) = retry_after {
                    text.push_str(&format!(" Try again in {secs} s."));
                }
                text
            }
            Self::Protocol(detail) => {
                format!("The switchboard gateway sent an answer the bridge cannot use: {detail}")
            }
            Self::JsonRpc(raw) => format!("The switchboard gateway answered with an error: {}", raw.get()),
        }
    }

    /// Whether, for `tools/call`, this is a protocol error (JSON-RPC error)
    /// rather than a tool execution error (`isError` result).
    pub(crate) fn is_protocol_error(&self) -> bool {
        matches!(self, Self::BadRequest { .. } | Self::JsonRpc(_))
    }

    /// The JSON-RPC error line answering request `id`.
    pub(crate) fn to_error_line(&self, id: &RawValue) -> String {
        match self {
            Self::JsonRpc(raw) => jsonrpc::raw_error_line(Some(id), raw),
            Self::BadRequest { .. } => {
                jsonrpc::error_line(Some(id), code::INVALID_PARAMS, &self.user_message())
            }
            _ => jsonrpc::error_line(Some(id), code::INTERNAL_ERROR, &self.user_message()),
        }
    }

    /// The `CallToolResult` with `isError: true` answering request `id`.
    pub(crate) fn to_tool_error_line(&self, id: &RawValue) -> String {
        let result = serde_json::json!({
            "content": [{"type": "text", "text": self.user_message()}],
            "isError": true,
        });
        jsonrpc::result_line(id, &result.to_string())
    }
}

/// Maps a reqwest failure (no HTTP status) to a gateway error. The detail walks
/// the source chain ("connection refused") without repeating the URL.
pub(crate) fn from_reqwest(err: &reqwest::Error, url: &str, timeout: Duration) -> GatewayError {
    if err.is_timeout() {
        return GatewayError::TimedOut { after: timeout };
    }
    // The innermost cause is the readable part ("Connection refused (os error 111)").
    let mut innermost: &dyn std::error::Error = err;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    let cause = innermost.to_string();
    let detail = if err.is_connect() {
        format!("cannot connect: {cause}")
    } else if std::ptr::addr_eq(innermost, err as &dyn std::error::Error) {
        "request failed".to_owned()
    } else {
        format!("connection failed: {cause}")
    };
    GatewayError::Unreachable { url: url.to_owned(), detail }
}
