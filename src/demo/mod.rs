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
//! * `mod.rs` (this file): the session on the shared stdio-server kit
//!   ([`crate::protocol::stdio_server`]: framing, envelope, malformed input), lifecycle
//!   methods, the credentials gate and the simulated latency.
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
//! * Malformed input, notifications and `jsonrpc` as the kit's module docs say
//!   ([`crate::protocol::stdio_server`]): `-32700` for what is not JSON (or longer than
//!   4 MiB), `-32600` for what is not a request, no answer without an `id`. Responses
//!   sent to us are ignored. Unknown methods get `-32601`, unknown tools
//!   `-32602 Unknown tool: NAME`.
//! * Lifecycle order is not enforced (a `tools/call` before `initialize` is served): the
//!   gateway, not this stand-in, is under test.
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

use serde_json::{Value, json};

use self::feedback::Feedback;
use self::tools::Tool;
use crate::protocol::jsonrpc::{RpcError, code};
use crate::protocol::stdio_server::{Connection, Reply, StdioServer, no_cursor, object_params, run_on_stdio};
use crate::protocol::{STDIO_VERSIONS, negotiate};

/// Name reported in `serverInfo`.
const SERVER_NAME: &str = "switchboard-demo";

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

/// Serves MCP over the process's stdin/stdout until stdin closes. Blocking (std I/O), no tokio.
///
/// A closed stdout (the client went away) ends serving quietly.
pub fn run() -> io::Result<()> {
    run_on_stdio(serve)
}

/// Same, over any reader/writer, with the environment lookup injected (for tests).
///
/// Returns `Ok(())` when `input` reaches end of file, and an error only when reading or
/// writing fails (or the bundled data set is broken, which its unit test rules out).
pub fn serve(
    input: impl BufRead,
    output: impl Write,
    env: &dyn Fn(&str) -> Option<String>,
) -> io::Result<()> {
    let feedback = Feedback::bundled().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let connection = Connection::new(SERVER_NAME, input, output);
    DemoServer { connection, feedback, env, latency: Latency::from_env(env) }.serve()
}

/// One stdio session's state: the streams, the data set and the injected environment.
struct DemoServer<'e, R, W> {
    /// The client's messages and our answers.
    connection: Connection<R, W>,
    /// The data set every tool queries, parsed once per session.
    feedback: Feedback,
    /// Environment lookup, read per call for [`TOKEN_VAR`] so tests control it.
    env: &'e dyn Fn(&str) -> Option<String>,
    /// Simulated API latency, from [`SLOW_VAR`].
    latency: Latency,
}

impl<R: BufRead, W: Write> StdioServer<R, W> for DemoServer<'_, R, W> {
    fn connection(&mut self) -> &mut Connection<R, W> {
        &mut self.connection
    }

    fn dispatch(&mut self, _id: &Value, method: &str, params: Option<&Value>) -> io::Result<Reply> {
        let outcome = match method {
            "initialize" => Ok(initialize(params)),
            "ping" => Ok(json!({})),
            "tools/list" => list_tools(params),
            "tools/call" => self.call_tool(params)?,
            _ => Err(RpcError::new(code::METHOD_NOT_FOUND, format!("Method not found: {method}"))),
        };
        Ok(outcome.into())
    }
}

impl<R: BufRead, W: Write> DemoServer<'_, R, W> {
    /// `tools/call`: name check, credentials gate, simulated latency, then the tool.
    fn call_tool(&mut self, params: Option<&Value>) -> io::Result<Result<Value, RpcError>> {
        let params = match object_params(params) {
            Ok(params) => params,
            Err(error) => return Ok(Err(error)),
        };
        let Some(name) = params.and_then(|p| p.get("name")).and_then(Value::as_str) else {
            return Ok(Err(RpcError::invalid_params("Invalid params: tools/call needs a string 'name'")));
        };
        let Some(tool) = Tool::from_name(name) else {
            return Ok(Err(RpcError::invalid_params(format!("Unknown tool: {name}"))));
        };
        if !self.has_token() {
            return Ok(Ok(tools::error_result(MISSING_TOKEN)));
        }
        let progress_token = params
            .and_then(|p| p.get("_meta"))
            .and_then(|meta| meta.get("progressToken"))
            .filter(|token| token.is_string() || token.is_number());
        self.latency.wait(progress_token, &mut self.connection)?;
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
    let version = negotiate(requested, STDIO_VERSIONS);
    json!({
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": false}},
        "serverInfo": {"name": SERVER_NAME, "version": env!("CARGO_PKG_VERSION")}
    })
}

/// `tools/list`: everything on one page, so any cursor is one we never issued.
fn list_tools(params: Option<&Value>) -> Result<Value, RpcError> {
    no_cursor(object_params(params)?).map(|()| tools::catalogue())
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
    fn wait<R: BufRead, W: Write>(
        &self,
        progress_token: Option<&Value>,
        connection: &mut Connection<R, W>,
    ) -> io::Result<()> {
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
                connection.send(&notification)?;
            }
        }
        Ok(())
    }
}
