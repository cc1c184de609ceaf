//! JSON-RPC reply matching, as the bench client needs it: pure functions over
//! bytes, no I/O.
//!
//! A Streamable HTTP server may answer a POST with `application/json` or with
//! a `text/event-stream` that carries notifications before the reply (decoded by
//! [`crate::protocol::sse`]); [`find_reply`] picks the JSON-RPC response with the
//! id we sent out of one message or a batch.
//! Must not: panic on any input, or interpret payloads beyond the envelope
//! (`id`, `result`, `error`).

use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};

/// A JSON-RPC response envelope whose `result` is parsed as `T`.
#[derive(Debug, Deserialize)]
pub(crate) struct RpcReply<T> {
    /// The request id this answers; absent on notifications.
    #[serde(default)]
    id: Option<serde_json::Value>,
    /// Present on server-to-client requests and notifications, which are skipped.
    #[serde(default)]
    method: Option<IgnoredAny>,
    /// The success payload.
    #[serde(default = "Option::default")]
    pub(crate) result: Option<T>,
    /// The JSON-RPC error object, if the call failed at the protocol level.
    #[serde(default)]
    pub(crate) error: Option<RpcErrorBody>,
}

/// The parts of a JSON-RPC error object worth showing in a setup failure.
#[derive(Debug, Deserialize)]
pub(crate) struct RpcErrorBody {
    /// JSON-RPC error code.
    #[serde(default)]
    pub(crate) code: i64,
    /// Human-readable message.
    #[serde(default)]
    pub(crate) message: String,
}

/// Finds the response to request `id` in one JSON-RPC message or a batch.
/// Returns `None` when the text is not JSON-RPC or holds no such response.
pub(crate) fn find_reply<T: DeserializeOwned>(data: &[u8], id: u64) -> Option<RpcReply<T>> {
    let first = data.iter().find(|b| !b.is_ascii_whitespace())?;
    let matches = |reply: &RpcReply<T>| {
        reply.method.is_none()
            && reply.id.as_ref().and_then(serde_json::Value::as_u64) == Some(id)
            && (reply.result.is_some() || reply.error.is_some())
    };
    if *first == b'[' {
        let batch: Vec<RpcReply<T>> = serde_json::from_slice(data).ok()?;
        batch.into_iter().find(matches)
    } else {
        let reply: RpcReply<T> = serde_json::from_slice(data).ok()?;
        matches(&reply).then_some(reply)
    }
}
