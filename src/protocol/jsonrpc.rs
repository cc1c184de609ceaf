//! The JSON-RPC 2.0 envelope, parsed only as far as routing needs: the id, the
//! method, and whether a message is a request, a notification or a response.
//! Everything else stays raw.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// The JSON-RPC error codes used in this project: the standard ones, MCP's, and the
/// gateway's own (in the range JSON-RPC leaves to implementations).
pub mod code {
    /// Not JSON (or not UTF-8, or too long to read).
    pub const PARSE_ERROR: i64 = -32700;
    /// JSON, but not a valid JSON-RPC request.
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// MCP's "resource not found" (2025-11-25 and earlier).
    pub const RESOURCE_NOT_FOUND: i64 = -32002;
    /// The gateway's own failures (session not found, saturated, upstream failed), in
    /// JSON-RPC's "server error" range.
    pub const GATEWAY_ERROR: i64 = -32000;
}

/// One JSON-RPC message, borrowed from the line it was read from.
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    /// Request or response id; absent for notifications.
    #[serde(borrow, default)]
    pub id: Option<&'a RawValue>,
    /// Present on requests and notifications.
    #[serde(borrow, default)]
    pub method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub params: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub error: Option<&'a RawValue>,
}

/// What a message is, by the rules of JSON-RPC 2.0.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    Response,
    Invalid,
}

impl<'a> Envelope<'a> {
    /// Parses one message. `Err` only when the text is not a JSON object of the right shape.
    pub fn parse(text: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    pub fn kind(&self) -> Kind {
        match (&self.method, self.id, self.result.is_some() || self.error.is_some()) {
            (Some(_), Some(_), false) => Kind::Request,
            (Some(_), None, false) => Kind::Notification,
            (None, Some(_), true) => Kind::Response,
            _ => Kind::Invalid,
        }
    }
}

/// Serializes a request with a raw `params` (omitted when `None`).
pub fn request(id: &str, method: &str, params: Option<&RawValue>) -> String {
    let method = json_string(method);
    match params {
        Some(p) => format!(r#"{{"jsonrpc":"2.0","id":{id},"method":{method},"params":{}}}"#, p.get()),
        None => format!(r#"{{"jsonrpc":"2.0","id":{id},"method":{method}}}"#),
    }
}

/// Serializes a notification with a raw `params` (omitted when `None`).
pub fn notification(method: &str, params: Option<&RawValue>) -> String {
    let method = json_string(method);
    match params {
        Some(p) => format!(r#"{{"jsonrpc":"2.0","method":{method},"params":{}}}"#, p.get()),
        None => format!(r#"{{"jsonrpc":"2.0","method":{method}}}"#),
    }
}

/// Serializes a success response around a raw result.
pub fn response(id: &str, result: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#)
}

/// Serializes an error response; `id` is raw JSON (`null` when unknown). The one
/// builder of error lines from raw parts: everything that answers with an error over
/// raw JSON goes through it or [`raw_error_response`].
pub fn error_response(id: &str, code: i64, message: &str) -> String {
    let message = json_string(message);
    format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{message}}}}}"#)
}

/// Serializes an error response around an error object passed through raw.
pub fn raw_error_response(id: &str, error: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{error}}}"#)
}

/// A JSON-RPC error about to be sent by one of the project's own stdio servers, which
/// work on [`serde_json::Value`]s (nothing they answer is forwarded from elsewhere).
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// JSON-RPC (or MCP) code, telling the client which rule was broken ([`code`]).
    pub code: i64,
    /// Human-readable explanation.
    pub message: String,
    /// Optional structured detail (e.g. the unknown resource's URI).
    pub data: Option<serde_json::Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), data: None }
    }

    /// `-32602`, the usual answer to arguments a method cannot use.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(code::INVALID_PARAMS, message)
    }

    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }

    /// The whole error response to request `id` (`null` when it is unknown).
    pub fn into_response(self, id: &serde_json::Value) -> serde_json::Value {
        let mut error = serde_json::json!({"code": self.code, "message": self.message});
        if let (Some(data), serde_json::Value::Object(fields)) = (self.data, &mut error) {
            fields.insert("data".to_owned(), data);
        }
        serde_json::json!({"jsonrpc": "2.0", "id": id, "error": error})
    }
}

/// A JSON string literal for `text`.
pub fn json_string(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

#[cfg(test)]
mod tests;
