//! PURE: the JSON-RPC 2.0 envelope as the bridge sees it. Parsing keeps the id,
//! params, result and error as raw JSON ([`RawValue`]) so nothing the bridge does
//! not interpret is ever re-serialized; building produces one-line strings ready
//! for stdout or an HTTP body (with [`crate::protocol::jsonrpc`]'s builders, made
//! single-line). No I/O, no tokio.

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::protocol::jsonrpc::code::{INVALID_REQUEST, PARSE_ERROR};
use crate::protocol::jsonrpc::{error_response, notification, raw_error_response, request, response};

#[cfg(test)]
mod tests;

/// One message from the other side, classified.
#[derive(Debug)]
pub(crate) enum Message {
    /// Has `method` and a non-null `id`: must be answered.
    Request { id: Box<RawValue>, method: String, params: Option<Box<RawValue>> },
    /// Has `method`, no `id`: never answered.
    Notification { method: String, params: Option<Box<RawValue>> },
    /// Has `id` and `result` or `error`, no `method`.
    Response { id: Box<RawValue>, outcome: Outcome },
}

/// The body of a response.
#[derive(Debug)]
pub(crate) enum Outcome {
    Result(Box<RawValue>),
    Error(Box<RawValue>),
}

/// Why a line is not a usable message; each maps to a JSON-RPC error.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ParseFailure {
    /// Not JSON at all (or not UTF-8): -32700, id null.
    NotJson(String),
    /// JSON, but not a JSON-RPC message: -32600, with the id when one was readable.
    Invalid { id: Option<String>, reason: String },
}

impl ParseFailure {
    /// The error line to send back.
    pub(crate) fn to_error_line(&self) -> String {
        match self {
            Self::NotJson(detail) => error_line(None, PARSE_ERROR, &format!("Parse error: {detail}")),
            Self::Invalid { id, reason } => {
                let id = id.as_deref().and_then(|raw| RawValue::from_string(raw.to_owned()).ok());
                error_line(id.as_deref(), INVALID_REQUEST, &format!("Invalid Request: {reason}"))
            }
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default, deserialize_with = "present")]
    id: Option<Box<RawValue>>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default, deserialize_with = "present")]
    params: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "present")]
    result: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "present")]
    error: Option<Box<RawValue>>,
}

/// `Some(raw)` whenever the key is present, `null` included (serde's default for
/// `Option` would turn `null` into `None`, hiding an invalid `"id": null`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

/// Only the id, to answer an invalid message with the id it carried.
#[derive(Deserialize)]
struct IdOnly {
    #[serde(default, deserialize_with = "present")]
    id: Option<Box<RawValue>>,
}

/// Parses one line (without its newline).
pub(crate) fn parse(line: &[u8]) -> Result<Message, ParseFailure> {
    let text = std::str::from_utf8(line).map_err(|_| ParseFailure::NotJson("not UTF-8".into()))?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        return match serde_json::from_str::<&RawValue>(text) {
            Ok(_) => Err(ParseFailure::Invalid { id: None, reason: "batches are not supported".into() }),
            Err(e) => Err(ParseFailure::NotJson(e.to_string())),
        };
    }
    let env: Envelope = match serde_json::from_str(text) {
        Ok(env) => env,
        Err(e) if e.is_data() => {
            let id = serde_json::from_str::<IdOnly>(text)
                .ok()
                .and_then(|i| i.id)
                .filter(|id| is_valid_id(id))
                .map(|id| id.get().to_owned());
            return Err(ParseFailure::Invalid { id, reason: e.to_string() });
        }
        Err(e) => return Err(ParseFailure::NotJson(e.to_string())),
    };
    let invalid = |id: &Option<Box<RawValue>>, reason: &str| ParseFailure::Invalid {
        id: id.as_ref().filter(|id| is_valid_id(id)).map(|id| id.get().to_owned()),
        reason: reason.to_owned(),
    };
    if let Some(params) = &env.params {
        let first = params.get().trim_start().as_bytes().first().copied();
        if !matches!(first, Some(b'{') | Some(b'[')) {
            return Err(invalid(&env.id, "params must be an object or an array"));
        }
    }
    match (env.method, env.id) {
        (Some(method), Some(id)) => {
            if !is_valid_id(&id) {
                return Err(invalid(&None, "id must be a string or an integer"));
            }
            Ok(Message::Request { id, method, params: env.params })
        }
        (Some(method), None) => Ok(Message::Notification { method, params: env.params }),
        (None, Some(id)) => {
            let outcome = match (env.result, env.error) {
                (Some(result), None) => Outcome::Result(result),
                (None, Some(error)) => Outcome::Error(error),
                _ => {
                    return Err(invalid(&Some(id), "a response needs exactly one of result and error"));
                }
            };
            Ok(Message::Response { id, outcome })
        }
        (None, None) => Err(invalid(&None, "missing method")),
    }
}

/// A JSON-RPC id is a string or a number (MCP: never null).
fn is_valid_id(id: &RawValue) -> bool {
    matches!(id.get().trim_start().as_bytes().first(), Some(b'"') | Some(b'-') | Some(b'0'..=b'9'))
}

/// A canonical text for an id, so `1` and `"1"` differ but `"a"` and `"\u0061"`
/// match: used as a map key for in-flight requests.
pub(crate) fn id_key(id: &RawValue) -> String {
    match serde_json::from_str::<serde_json::Value>(id.get()) {
        Ok(value) => value.to_string(),
        Err(_) => id.get().to_owned(),
    }
}

/// JSON text never needs a raw newline (strings escape them), so replacing line
/// breaks by spaces makes any valid JSON text fit on one stdio line unchanged in
/// meaning.
pub(crate) fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(['\n', '\r']) {
        std::borrow::Cow::Owned(text.replace(['\n', '\r'], " "))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// `{"jsonrpc":"2.0","id":ID,"result":RESULT}` with RESULT raw JSON text.
pub(crate) fn result_line(id: &RawValue, result: &str) -> String {
    one_line(&response(id.get(), result.trim())).into_owned()
}

/// A JSON-RPC error response; `id` `None` becomes `null`.
pub(crate) fn error_line(id: Option<&RawValue>, code: i64, message: &str) -> String {
    error_response(id.map_or("null", RawValue::get), code, message)
}

/// A JSON-RPC error response whose error object is passed through raw.
pub(crate) fn raw_error_line(id: Option<&RawValue>, error: &RawValue) -> String {
    one_line(&raw_error_response(id.map_or("null", RawValue::get), error.get().trim())).into_owned()
}

/// A request or notification line with raw params (`id` `None`: notification).
pub(crate) fn request_line(id: Option<&str>, method: &str, params: Option<&RawValue>) -> String {
    let line = match id {
        Some(id) => request(id, method, params),
        None => notification(method, params),
    };
    one_line(&line).into_owned()
}

/// A response line with a raw outcome.
pub(crate) fn response_line(id: &RawValue, outcome: &Outcome) -> String {
    match outcome {
        Outcome::Result(result) => result_line(id, result.get()),
        Outcome::Error(error) => raw_error_line(Some(id), error),
    }
}
