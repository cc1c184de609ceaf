//! The demo analytics MCP server: a stand-in for an external API, run by `switchboard
//! demo-server`, that the gateway spawns as a stdio tool server in examples, tests and
//! benchmarks.
//!
//! It speaks MCP over stdio (newline-delimited JSON-RPC 2.0 on stdin/stdout, protocol
//! versions 2024-11-05 to 2025-11-25) and answers questions about a bundled, deterministic
//! customer-feedback data set (`feedback.csv`, 400 responses to 4 surveys). Tools: `echo`,
//! `list_surveys`, `survey_summary`, `segment_breakdown`, `search_feedback`, all read-only.
//!
//! # Layout
//! * `mod.rs` (this file): the session: framing, JSON-RPC envelope, lifecycle methods, the
//!   credentials gate and the simulated latency.
//! * `tools.rs`: the tool catalogue, argument validation, `CallToolResult`s.
//! * `feedback.rs`: the data set and its statistics (pure).
//!
//! # Environment
//! Read through the `env` function given to [`serve`], never from the process directly:
//! * `DEMO_TOKEN`: stands for the external API's credential. Every `tools/call` is refused
//!   (an `isError: true` result) unless it is set and non-blank; `tools/list` works without
//!   it. The value is only checked for presence, never logged or echoed.
//! * `DEMO_SLOW_MS` (for the project's own tests only): milliseconds to sleep inside every
//!   authorised `tools/call`, capped at 10 minutes, so timeouts can be exercised. While
//!   sleeping, if the call carried `params._meta.progressToken`, a `notifications/progress`
//!   is sent every 100 ms (`progress` = elapsed ms, `total` = the delay).
//!
//! # Behaviour at the edges
//! * A line that is not JSON (or not UTF-8, or longer than 4 MiB) gets a `-32700` error
//!   with id `null`; serving goes on. A non-object, or a request whose id is not a string or
//!   number, gets `-32600`.
//! * A message without an `id` is a notification and is never answered, whatever its
//!   method (or lack of one); responses sent to us are ignored. Unknown methods get `-32601`, unknown tools `-32602 Unknown tool: NAME`.
//! * Lifecycle order is not enforced (a `tools/call` before `initialize` is served), and
//!   `jsonrpc: "2.0"` is not checked: the gateway, not this stand-in, is under test.
//! * Requests are handled one at a time, so `notifications/cancelled` cannot interrupt a
//!   slow call; its late response is for the client to ignore.
//!
//! **Invariant:** stdout carries only JSON-RPC messages, one per line, flushed as written;
//! diagnostics go to stderr. Nothing here panics on input, spawns a thread or uses tokio.

mod feedback;
mod tools;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on purpose
mod tests;

use std::io::{self, BufRead, Write};
use std::thread;
use std::time::Duration;

use crate::protocol::lines::{Frame, read_message, send};
use serde_json::{Map, Value, json};

use self::feedback::Feedback;
use self::tools::Tool;

/// Name reported in `serverInfo`.
const SERVER_NAME: &str = "switchboard-demo";

/// Protocol versions we answer with when a client asks for them, newest first; the first
/// is also the answer to any version we do not know.
const SUPPORTED_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Longest message accepted; the largest legitimate one (an `echo` of a long text) is far
/// smaller, and the bound keeps a runaway writer from growing our buffer forever.
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Cap on `DEMO_SLOW_MS`, so a typo cannot wedge a test run for hours.
const MAX_SLOW_MS: u64 = 10 * 60 * 1000;

/// How often a slow call reports progress.
const PROGRESS_INTERVAL_MS: u64 = 100;

/// Environment variable whose presence stands for valid API credentials.
const TOKEN_VAR: &str = "DEMO_TOKEN";

/// Environment variable that adds latency to tool calls (tests only).
const SLOW_VAR: &str = "DEMO_SLOW_MS";

/// What a tool call says when the credential is missing.
const MISSING_TOKEN: &str = "DEMO_TOKEN is not set: the demo analytics API refuses to serve \
                             without credentials. Set DEMO_TOKEN in this server's environment.";

/// JSON-RPC error codes used here.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

/// Serves MCP over the process's stdin/stdout until stdin closes. Blocking (std I/O), no tokio.
pub fn run() -> io::Result<()> {
    let stdin = io::stdin();
    let stdout = io::stdout();
    serve(stdin.lock(), stdout.lock(), &|key| std::env::var(key).ok())
}

/// Same, over any reader/writer, with the environment lookup injected (for tests).
///
/// Returns `Ok(())` when `input` reaches end of file, and an error only when reading or
/// writing fails (or the bundled data set is broken, which its unit test rules out).
pub fn serve(
    mut input: impl BufRead,
    mut output: impl Write,
    env: &dyn Fn(&str) -> Option<String>,
) -> io::Result<()> {
    let feedback = Feedback::bundled().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let server = DemoServer { feedback, env, latency: Latency::from_env(env) };
    let mut line = Vec::new();
    loop {
        match read_message(&mut input, &mut line, MAX_MESSAGE_BYTES)? {
            Frame::End => return Ok(()),
            Frame::TooLong => {
                eprintln!("{SERVER_NAME}: dropped a message longer than {MAX_MESSAGE_BYTES} bytes");
                let error = RpcError::new(
                    PARSE_ERROR,
                    format!("Parse error: message longer than {MAX_MESSAGE_BYTES} bytes"),
                );
                send(&mut output, &error.into_response(&Value::Null))?;
            }
            Frame::Message => server.handle(&line, &mut output)?,
        }
    }
}

/// A JSON-RPC error about to be sent.
#[derive(Debug, Clone, PartialEq)]
struct RpcError {
    /// Standard JSON-RPC code, telling the client which rule was broken.
    code: i64,
    /// Human-readable explanation.
    message: String,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    fn into_response(self, id: &Value) -> Value {
        json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {"code": self.code, "message": self.message}
        })
    }
}

/// One stdio session's state: the data set and the injected environment.
struct DemoServer<'e> {
    /// The data set every tool queries, parsed once per session.
    feedback: Feedback,
    /// Environment lookup, read per call for [`TOKEN_VAR`] so tests control it.
    env: &'e dyn Fn(&str) -> Option<String>,
    /// Simulated API latency, from [`SLOW_VAR`].
    latency: Latency,
}

impl DemoServer<'_> {
    /// Handles one line of input, writing at most one response (plus progress notifications).
    fn handle(&self, line: &[u8], output: &mut impl Write) -> io::Result<()> {
        if line.trim_ascii().is_empty() {
            return Ok(());
        }
        let message: Value = match serde_json::from_slice(line) {
            Ok(message) => message,
            Err(error) => {
                eprintln!("{SERVER_NAME}: unparsable message: {error}");
                let error = RpcError::new(PARSE_ERROR, format!("Parse error: {error}"));
                return send(output, &error.into_response(&Value::Null));
            }
        };
        let Value::Object(message) = message else {
            let error = RpcError::new(INVALID_REQUEST, "Invalid Request: expected a JSON object");
            return send(output, &error.into_response(&Value::Null));
        };
        let Some(id) = message.get("id") else {
            // No id: a notification (or something malformed shaped like one). A reply
            // could not be matched to anything, so none is ever sent.
            return Ok(());
        };
        let valid_id = (id.is_string() || id.is_number()).then_some(id);
        match (message.get("method"), valid_id) {
            (Some(Value::String(method)), Some(id)) => {
                self.respond(id, method, message.get("params"), output)
            }
            // A response to a request we never send: nothing to do.
            (None, _) if message.contains_key("result") || message.contains_key("error") => Ok(()),
            (Some(Value::String(_)), None) => {
                let error =
                    RpcError::new(INVALID_REQUEST, "Invalid Request: id must be a string or a number");
                send(output, &error.into_response(&Value::Null))
            }
            (_, id) => {
                let error = RpcError::new(
                    INVALID_REQUEST,
                    "Invalid Request: expected a request with a string method",
                );
                send(output, &error.into_response(id.unwrap_or(&Value::Null)))
            }
        }
    }

    /// Answers request `id`.
    fn respond(
        &self,
        id: &Value,
        method: &str,
        params: Option<&Value>,
        output: &mut impl Write,
    ) -> io::Result<()> {
        let outcome = match method {
            "initialize" => Ok(initialize(params)),
            "ping" => Ok(json!({})),
            "tools/list" => list_tools(params),
            "tools/call" => self.call_tool(params, output)?,
            _ => Err(RpcError::new(METHOD_NOT_FOUND, format!("Method not found: {method}"))),
        };
        let response = match outcome {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err(error) => error.into_response(id),
        };
        send(output, &response)
    }

    /// `tools/call`: name check, credentials gate, simulated latency, then the tool.
    fn call_tool(
        &self,
        params: Option<&Value>,
        output: &mut impl Write,
    ) -> io::Result<Result<Value, RpcError>> {
        let params = match object_params(params) {
            Ok(params) => params,
            Err(error) => return Ok(Err(error)),
        };
        let Some(name) = params.and_then(|p| p.get("name")).and_then(Value::as_str) else {
            return Ok(Err(RpcError::new(
                INVALID_PARAMS,
                "Invalid params: tools/call needs a string 'name'",
            )));
        };
        let Some(tool) = Tool::from_name(name) else {
            return Ok(Err(RpcError::new(INVALID_PARAMS, format!("Unknown tool: {name}"))));
        };
        if !self.has_token() {
            return Ok(Ok(tools::error_result(MISSING_TOKEN)));
        }
        let progress_token = params
            .and_then(|p| p.get("_meta"))
            .and_then(|meta| meta.get("progressToken"))
            .filter(|token| token.is_string() || token.is_number());
        self.latency.wait(progress_token, output)?;
        let arguments = params.and_then(|p| p.get("arguments"));
        Ok(Ok(tools::call(tool, arguments, &self.feedback)))
    }

    /// Whether the (stand-in) API credential is configured. Only presence is checked.
    fn has_token(&self) -> bool {
        (self.env)(TOKEN_VAR).is_some_and(|token| !token.trim().is_empty())
    }
}

/// `initialize`: echo a supported protocol version, otherwise offer our newest.
fn initialize(params: Option<&Value>) -> Value {
    let requested = params.and_then(|p| p.get("protocolVersion")).and_then(Value::as_str);
    let version = SUPPORTED_VERSIONS
        .into_iter()
        .find(|supported| Some(*supported) == requested)
        .unwrap_or(SUPPORTED_VERSIONS[0]);
    json!({
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": false}},
        "serverInfo": {"name": SERVER_NAME, "version": env!("CARGO_PKG_VERSION")}
    })
}

/// `tools/list`: everything on one page, so any cursor is one we never issued.
fn list_tools(params: Option<&Value>) -> Result<Value, RpcError> {
    let params = object_params(params)?;
    match params.and_then(|p| p.get("cursor")) {
        None | Some(Value::Null) => Ok(tools::catalogue()),
        Some(_) => Err(RpcError::new(INVALID_PARAMS, "Invalid params: unknown cursor")),
    }
}

/// `params` as an object; absent or `null` is `None`, anything else is invalid.
fn object_params(params: Option<&Value>) -> Result<Option<&Map<String, Value>>, RpcError> {
    match params {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(_) => Err(RpcError::new(INVALID_PARAMS, "Invalid params: params must be an object")),
    }
}

/// Simulated latency of the stand-in API ([`SLOW_VAR`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Latency {
    /// Milliseconds each authorised tool call sleeps; 0 for none.
    total_ms: u64,
}

impl Latency {
    fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Self {
        let total_ms = match env(SLOW_VAR) {
            None => 0,
            Some(value) if value.trim().is_empty() => 0,
            Some(value) => match value.trim().parse::<u64>() {
                Ok(ms) => ms.min(MAX_SLOW_MS),
                Err(_) => {
                    eprintln!("{SERVER_NAME}: ignoring {SLOW_VAR}={value:?}: not a number of ms");
                    0
                }
            },
        };
        Self { total_ms }
    }

    /// Sleeps `total_ms`, reporting progress every [`PROGRESS_INTERVAL_MS`] when the
    /// caller supplied a progress token.
    fn wait(&self, progress_token: Option<&Value>, output: &mut impl Write) -> io::Result<()> {
        let mut elapsed = 0;
        while elapsed < self.total_ms {
            let step = PROGRESS_INTERVAL_MS.min(self.total_ms - elapsed);
            thread::sleep(Duration::from_millis(step));
            elapsed += step;
            if let Some(token) = progress_token {
                let notification = json!({
                    "jsonrpc": "2.0",
                    "method": "notifications/progress",
                    "params": {
                        "progressToken": token,
                        "progress": elapsed,
                        "total": self.total_ms,
                        "message": "querying the analytics API"
                    }
                });
                send(output, &notification)?;
            }
        }
        Ok(())
    }
}
