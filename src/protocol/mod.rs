//! The one owner of the protocol: the JSON-RPC 2.0 envelope and error codes, MCP
//! versions and header names, Server-Sent Events decoding, line framing, and the kit
//! the project's own stdio MCP servers are built on. Everything that speaks MCP (the
//! server, the bridge, the bench, the demo server, the conformance fixture) takes these
//! from here rather than spelling them again.
//!
//! Pure where it can be: [`jsonrpc`] and [`sse`] do no I/O and can be fuzzed. [`lines`]
//! frames lines over any reader: blocking over `std::io::BufRead`, and async over tokio's
//! `AsyncBufRead` (tokio's io traits only: no runtime, no sockets). [`stdio_server`] is
//! the blocking serve loop of the demo server and the fixture (std I/O only, no tokio).
//! No axum, no redis, no reqwest.
//!
//! Payloads the gateway does not interpret stay raw JSON ([`serde_json::value::RawValue`])
//! so unknown fields and newer protocol versions pass through byte for byte.

pub mod jsonrpc;
pub mod lines;
pub mod modern;
pub mod sse;
pub mod stdio_server;

/// The protocol version the gateway offers to the servers it spawns.
pub const UPSTREAM_PROTOCOL_VERSION: &str = "2025-11-25";

/// The newest protocol version; the answer to a client asking for one nobody here knows.
pub const LATEST_VERSION: &str = "2025-11-25";

/// Protocol versions the gateway accepts from clients on `/mcp` (`initialize` and the
/// `MCP-Protocol-Version` header), newest first. Streamable HTTP, the transport the
/// gateway serves, arrived with 2025-03-26, so it is the oldest one here.
pub const SUPPORTED_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];

/// Protocol versions the project's stdio peers answer (the demo server, the conformance
/// fixture, and the bridge when it answers `initialize` itself), newest first. Over stdio
/// the transport did not change between revisions, so these also answer 2024-11-05
/// (whose HTTP transport, HTTP+SSE, the gateway does not serve): a stdio host or a
/// gateway offering it gets it back.
pub const STDIO_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// The version to answer `initialize` with: the requested one when it is in `supported`
/// (newest first), else the newest.
pub fn negotiate<'a>(requested: Option<&str>, supported: &[&'a str]) -> &'a str {
    supported
        .iter()
        .copied()
        .find(|version| Some(*version) == requested)
        .or_else(|| supported.first().copied())
        .unwrap_or(LATEST_VERSION)
}

/// Header carrying the session id, on `/mcp` and on the legacy JSON routes. Lower case,
/// as HTTP/2 and `http::HeaderName::from_static` want it (header names are case-insensitive).
pub const SESSION_HEADER: &str = "mcp-session-id";

/// Header carrying the negotiated protocol version on every request after `initialize`.
pub const VERSION_HEADER: &str = "mcp-protocol-version";

/// Header a client resumes an SSE stream with.
pub const LAST_EVENT_ID_HEADER: &str = "last-event-id";

/// `Accept` value the Streamable HTTP transport requires on a POST.
pub const ACCEPT_JSON_AND_SSE: &str = "application/json, text/event-stream";

/// Content type of an SSE answer.
pub const EVENT_STREAM: &str = "text/event-stream";

/// Most bytes of the client's `capabilities` (serialized) a session keeps and replays into
/// every child's `initialize`: 8 KiB is many times what any client declares.
pub const MAX_CAPABILITIES_BYTES: usize = 8 * 1024;

/// Deepest nesting of the client's `capabilities`: the specification's own go three deep.
pub const MAX_CAPABILITIES_DEPTH: usize = 8;

/// Why a client's `capabilities` are refused, naming the limit; `None` when within both
/// [`MAX_CAPABILITIES_BYTES`] and [`MAX_CAPABILITIES_DEPTH`].
pub fn capabilities_problem(capabilities: &serde_json::Value) -> Option<String> {
    let bytes = capabilities.to_string().len();
    if bytes > MAX_CAPABILITIES_BYTES {
        return Some(format!(
            "capabilities are {bytes} bytes; at most {MAX_CAPABILITIES_BYTES} are accepted"
        ));
    }
    let depth = json_depth(capabilities);
    (depth > MAX_CAPABILITIES_DEPTH).then(|| {
        format!("capabilities nest {depth} deep; at most {MAX_CAPABILITIES_DEPTH} levels are accepted")
    })
}

/// How deep a JSON value nests: 0 for a scalar, 1 for a flat object or array. Iterative,
/// so no input can exhaust the stack.
pub fn json_depth(value: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(value, 0usize)];
    while let Some((value, depth)) = pending.pop() {
        let children: Box<dyn Iterator<Item = &serde_json::Value>> = match value {
            serde_json::Value::Array(items) => Box::new(items.iter()),
            serde_json::Value::Object(fields) => Box::new(fields.values()),
            _ => continue,
        };
        deepest = deepest.max(depth + 1);
        pending.extend(children.map(|child| (child, depth + 1)));
    }
    deepest
}

#[cfg(test)]
mod tests;
