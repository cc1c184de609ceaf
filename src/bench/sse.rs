//! Server-Sent Events framing and JSON-RPC reply matching, as the bench
//! client needs them: pure functions over bytes, no I/O.
//!
//! A Streamable HTTP server may answer a POST with `application/json` or with
//! a `text/event-stream` that carries notifications before the reply. The
//! decoder turns arbitrary chunks into events; [`find_reply`] picks the
//! JSON-RPC response with the id we sent out of one message or a batch.
//! Must not: allocate per byte, panic on any input, or interpret payloads
//! beyond the envelope (`id`, `result`, `error`).

use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};

/// One dispatched SSE event. Only `data` matters to the bench; the event
/// type is kept so tests and callers can tell `message` from others.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct SseEvent {
    /// The `event:` field, empty when the server sent none (meaning `message`).
    pub(crate) event: String,
    /// The `data:` lines joined with `\n`, as the SSE specification says.
    pub(crate) data: String,
}

/// Incremental SSE decoder: feed it chunks as they arrive, in any split.
#[derive(Debug, Default)]
pub(crate) struct SseDecoder {
    /// Bytes of the current, not yet terminated line.
    line: Vec<u8>,
    /// Whether the previous chunk ended in `\r`, so a leading `\n` is part of that line end.
    after_cr: bool,
    /// The event being assembled.
    pending: SseEvent,
    /// Whether any `data:` line was seen for `pending` (an event without data is not dispatched).
    has_data: bool,
}

impl SseDecoder {
    /// Consumes one chunk and returns the events it completed.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        for &byte in chunk {
            if self.after_cr {
                self.after_cr = false;
                if byte == b'\n' {
                    continue;
                }
            }
            match byte {
                b'\n' => self.end_line(&mut out),
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(&mut out);
                }
                other => self.line.push(other),
            }
        }
        out
    }

    /// Ends the stream: an unterminated last line and event are dispatched
    /// too (lenient; a strict client would drop them).
    pub(crate) fn finish(&mut self) -> Option<SseEvent> {
        let mut out = Vec::new();
        if !self.line.is_empty() {
            self.end_line(&mut out);
        }
        self.end_line(&mut out);
        out.pop()
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        if self.line.is_empty() {
            if self.has_data {
                out.push(std::mem::take(&mut self.pending));
            } else {
                self.pending = SseEvent::default();
            }
            self.has_data = false;
            return;
        }
        let line = String::from_utf8_lossy(&self.line);
        let (field, value) = match line.find(':') {
            Some(0) => ("", ""), // comment
            Some(at) => {
                let value = &line[at + 1..];
                (&line[..at], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.pending.data.push('\n');
                }
                self.pending.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.pending.event = value.to_owned(),
            _ => {} // id, retry, comments: not needed to find a reply
        }
        self.line.clear();
    }
}

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
