//! The conformance fixture server, run by `switchboard conformance-server` (hidden): a
//! stdio MCP server implementing the tools, resources, prompts and utilities that the
//! official conformance suite (`@modelcontextprotocol/conformance`, server mode) expects
//! from the server under test, so the suite can be run against the gateway's `/mcp`.
//!
//! It speaks MCP over stdio (newline-delimited JSON-RPC 2.0 on stdin/stdout, protocol
//! versions 2024-11-05 to 2025-11-25; the legacy `initialize` lifecycle). Written from the
//! scenario descriptions and checks of suite 0.1.16 (active and pending suites) and
//! 0.2.0-alpha.12 (whose `wire-schema-valid` check validates every message sent here against
//! the negotiated revision's JSON schema).
//!
//! # Layout
//! * `mod.rs` (this file): framing, the JSON-RPC envelope, the session (lifecycle, logging
//!   level, requests this server sends to the client and the wait for their responses).
//! * `tools.rs`: the `test_*` tools, including the ones that log, report progress or ask
//!   the client for sampling and elicitation.
//! * `catalog.rs`: resources, resource templates, prompts, completion and the fixed
//!   payloads (a 1x1 PNG, a tiny WAV) they share with the tools.
//!
//! # Built to be spawned once per request
//! The gateway starts a fresh process for every client request: `initialize`,
//! `notifications/initialized`, one request, then it closes stdin. Nothing here survives
//! the process, so everything is stateless across requests: `resources/subscribe` is
//! acknowledged (`{}`) but can never produce `notifications/resources/updated`, and
//! `logging/setLevel` only filters the logs of the process it was sent to (default: every
//! level is sent). Start-up does no work beyond reading stdin.
//!
//! # Server-to-client requests
//! `test_sampling`, `test_elicitation`, `test_elicitation_sep1034_defaults` and
//! `test_elicitation_sep1330_enums` write a JSON-RPC request (`sampling/createMessage` or
//! `elicitation/create`) to stdout with this server's own string id
//! (`switchboard-conformance-N`), then read stdin until the response with that id arrives:
//! * responses with other ids and notifications other than cancellation are ignored;
//! * `notifications/cancelled` for the tool call being served ends the wait: the call is
//!   abandoned without a response, and the client is told our request is cancelled too;
//! * requests arriving meanwhile are served (nested up to `MAX_NESTING` (4) deep, beyond
//!   which they get `-32603`);
//! * end of input before the response makes the tool call an `isError: true` result.
//!
//! These tools are always listed, but a call fails (an `isError: true` result) when the
//! client's `initialize` in this process declared `capabilities` without `sampling` (or
//! `elicitation`): a server must only use negotiated capabilities. So the gateway must
//! pass the MCP client's own capabilities into the child's `initialize`. Without any
//! `initialize` the capability is assumed.
//!
//! # Environment
//! Read through the `env` function given to [`serve`], never from the process directly:
//! * `SWITCHBOARD_CONFORMANCE_RECONNECTION_MS`: how long `test_reconnection` works before
//!   answering (default `DEFAULT_RECONNECTION_MS` (500 ms), capped at `MAX_RECONNECTION_MS` (60 s)).
//!   Its scenario (`server-sse-polling`, SEP-1699) is about the HTTP layer; over stdio the
//!   tool can only be slow enough for it. What the suite (0.1.16) checks on the POST that
//!   calls the tool: `server-sse-priming-event` (the first SSE event has an `id` and empty
//!   `data`) and `server-sse-retry-field` (a `retry:` field) are SUCCESS when present,
//!   WARNING otherwise; if the stream closes before the result, it GETs the endpoint with
//!   `Last-Event-ID` and the session id and wants the result there within 5 s
//!   (`server-sse-disconnect-resume`: SUCCESS, else WARNING; 405 or a result on the POST
//!   stream itself: INFO). The only FAILUREs are a POST answered with a status other than
//!   2xx, 400 or 404, or an `isError` result.
//!
//! # Behaviour at the edges
//! * A line that is not JSON (or not UTF-8, or longer than 4 MiB) gets a `-32700` error
//!   with id `null`; serving goes on. A non-object, or a request whose id is not a string or
//!   number, gets `-32600`.
//! * Notifications are never answered; unknown methods get `-32601`, unknown tools and
//!   prompts `-32602`, unknown resources `-32002`. Invalid tool arguments are
//!   `isError: true` results (MCP 2025-11-25, SEP-1303).
//! * Lifecycle order is not enforced and `jsonrpc: "2.0"` is not checked: the gateway, not
//!   this fixture, is under test.
//! * The tools that sleep (logging, progress, reconnection) do not read stdin while they
//!   sleep, so a cancellation sent then is only seen after the response went out.
//!
//! **Invariant:** stdout carries only JSON-RPC messages, one per line, flushed as written;
//! diagnostics go to stderr. Nothing here panics on input, spawns a thread or uses tokio.

mod catalog;
mod tools;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on purpose
mod tests;

use std::io::{self, BufRead, Write};

use crate::protocol::lines::{Frame, read_message, send};
use serde_json::{Map, Value, json};

/// Name reported in `serverInfo`.
const SERVER_NAME: &str = "switchboard-conformance";

/// Protocol versions we answer with when a client asks for them, newest first; the first
/// is also the answer to any version we do not know.
const SUPPORTED_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Longest message accepted, so a runaway writer cannot grow our buffer forever.
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// How many client requests may be served while waiting for the client's answer to one of
/// ours (each of which may itself wait); deeper ones get an error instead of recursing.
const MAX_NESTING: usize = 4;

/// Environment variable: `test_reconnection`'s working time in milliseconds.
const RECONNECTION_VAR: &str = "SWITCHBOARD_CONFORMANCE_RECONNECTION_MS";

/// `test_reconnection`'s working time when [`RECONNECTION_VAR`] is not set.
const DEFAULT_RECONNECTION_MS: u64 = 500;

/// Cap on [`RECONNECTION_VAR`], so a typo cannot wedge a test run.
const MAX_RECONNECTION_MS: u64 = 60_000;

/// Prefix of the ids of the requests this server sends to the client.
const OWN_ID_PREFIX: &str = "switchboard-conformance-";

/// JSON-RPC error codes used here.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const INTERNAL_ERROR: i64 = -32603;
/// MCP's "resource not found" (2025-11-25 and earlier).
const RESOURCE_NOT_FOUND: i64 = -32002;

/// Serves MCP over the process's stdin/stdout until stdin closes. Blocking (std I/O), no tokio.
///
/// A closed stdout (the client went away) ends serving quietly.
pub fn run() -> io::Result<()> {
    let stdin = io::stdin();
    let stdout = io::stdout();
    match serve(stdin.lock(), stdout.lock(), &|key| std::env::var(key).ok()) {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Same, over any reader/writer, with the environment lookup injected (for tests).
///
/// Returns `Ok(())` when `input` reaches end of file, and an error only when reading or
/// writing fails.
pub fn serve(
    input: impl BufRead,
    output: impl Write,
    env: &dyn Fn(&str) -> Option<String>,
) -> io::Result<()> {
    let mut session = Session {
        input,
        output,
        line: Vec::new(),
        client_capabilities: None,
        log_level: LogLevel::Debug,
        reconnection_ms: reconnection_ms(env),
        sent_requests: 0,
        nesting: 0,
    };
    while let Some(message) = session.receive()? {
        match message {
            Incoming::Request { id, method, params } => session.answer(&id, &method, params.as_ref())?,
            // Nothing is in flight between requests: notifications (initialized, a late
            // cancellation, ...) and stray responses need no action.
            Incoming::Notification { .. } | Incoming::Response { .. } => {}
        }
    }
    Ok(())
}

/// `test_reconnection`'s working time, from [`RECONNECTION_VAR`].
fn reconnection_ms(env: &dyn Fn(&str) -> Option<String>) -> u64 {
    match env(RECONNECTION_VAR) {
        None => DEFAULT_RECONNECTION_MS,
        Some(value) if value.trim().is_empty() => DEFAULT_RECONNECTION_MS,
        Some(value) => match value.trim().parse::<u64>() {
            Ok(ms) => ms.min(MAX_RECONNECTION_MS),
            Err(_) => {
                eprintln!("{SERVER_NAME}: ignoring {RECONNECTION_VAR}={value:?}: not a number of ms");
                DEFAULT_RECONNECTION_MS
            }
        },
    }
}

/// A JSON-RPC error about to be sent.
#[derive(Debug, Clone, PartialEq)]
struct RpcError {
    /// Standard JSON-RPC (or MCP) code, telling the client which rule was broken.
    code: i64,
    /// Human-readable explanation.
    message: String,
    /// Optional structured detail (e.g. the unknown resource's URI).
    data: Option<Value>,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), data: None }
    }

    fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }

    fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    fn into_response(self, id: &Value) -> Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if let (Some(data), Value::Object(fields)) = (self.data, &mut error) {
            fields.insert("data".to_owned(), data);
        }
        json!({"jsonrpc": "2.0", "id": id, "error": error})
    }
}

/// How a request ends.
#[derive(Debug, Clone, PartialEq)]
enum Reply {
    /// A `result`.
    Done(Value),
    /// An `error`.
    Failed(RpcError),
    /// The client cancelled the request: no response at all.
    Cancelled,
}

impl From<Result<Value, RpcError>> for Reply {
    fn from(outcome: Result<Value, RpcError>) -> Self {
        match outcome {
            Ok(result) => Self::Done(result),
            Err(error) => Self::Failed(error),
        }
    }
}

/// One well-formed message from the client.
#[derive(Debug, Clone, PartialEq)]
enum Incoming {
    Request {
        id: Value,
        method: String,
        params: Option<Value>,
    },
    Notification {
        method: String,
        params: Option<Value>,
    },
    /// A response to one of our requests: `outcome` is its `result` or its `error` object.
    Response {
        id: Value,
        outcome: Result<Value, Value>,
    },
}

/// What the client answered to a request of ours.
#[derive(Debug, Clone, PartialEq)]
enum ClientAnswer {
    /// Its `result`.
    Result(Value),
    /// Its `error` object.
    Error(Value),
    /// Input ended before the answer.
    Closed,
    /// The client cancelled the tool call that was waiting.
    Cancelled,
}

/// MCP log levels (RFC 5424 severities), least severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum LogLevel {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

impl LogLevel {
    const ALL: [Self; 8] = [
        Self::Debug,
        Self::Info,
        Self::Notice,
        Self::Warning,
        Self::Error,
        Self::Critical,
        Self::Alert,
        Self::Emergency,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Notice => "notice",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Critical => "critical",
            Self::Alert => "alert",
            Self::Emergency => "emergency",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|level| level.name() == name)
    }
}

/// One stdio session: the streams and what this process learned from the client.
struct Session<R, W> {
    input: R,
    output: W,
    /// Read buffer, reused for every line.
    line: Vec<u8>,
    /// `params.capabilities` of the client's `initialize`, if one was received.
    client_capabilities: Option<Value>,
    /// Least severe level still sent as `notifications/message` (`logging/setLevel`).
    log_level: LogLevel,
    /// `test_reconnection`'s working time.
    reconnection_ms: u64,
    /// How many requests we sent the client (numbers our ids).
    sent_requests: u64,
    /// How many client requests are being served inside waits for client answers.
    nesting: usize,
}

impl<R: BufRead, W: Write> Session<R, W> {
    /// The next well-formed message, or `None` at end of input. Malformed lines are
    /// answered with JSON-RPC errors here and skipped.
    fn receive(&mut self) -> io::Result<Option<Incoming>> {
        loop {
            match read_message(&mut self.input, &mut self.line, MAX_MESSAGE_BYTES)? {
                Frame::End => return Ok(None),
                Frame::TooLong => {
                    eprintln!("{SERVER_NAME}: dropped a message longer than {MAX_MESSAGE_BYTES} bytes");
                    let error = RpcError::new(
                        PARSE_ERROR,
                        format!("Parse error: message longer than {MAX_MESSAGE_BYTES} bytes"),
                    );
                    send(&mut self.output, &error.into_response(&Value::Null))?;
                }
                Frame::Message => match parse(&self.line) {
                    Ok(None) => {}
                    Ok(Some(message)) => return Ok(Some(message)),
                    Err((error, id)) => send(&mut self.output, &error.into_response(&id))?,
                },
            }
        }
    }

    /// Serves request `id` and writes its response (none if it was cancelled).
    fn answer(&mut self, id: &Value, method: &str, params: Option<&Value>) -> io::Result<()> {
        let response = match self.dispatch(id, method, params)? {
            Reply::Done(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Reply::Failed(error) => error.into_response(id),
            Reply::Cancelled => {
                eprintln!("{SERVER_NAME}: request {id} cancelled by the client; not answering it");
                return Ok(());
            }
        };
        send(&mut self.output, &response)
    }

    fn dispatch(&mut self, id: &Value, method: &str, params: Option<&Value>) -> io::Result<Reply> {
        let params = match object_params(params) {
            Ok(params) => params,
            Err(error) => return Ok(Reply::Failed(error)),
        };
        let outcome = match method {
            "initialize" => Ok(self.initialize(params)),
            "ping" => Ok(json!({})),
            "logging/setLevel" => self.set_level(params),
            "tools/list" => no_cursor(params).map(|()| tools::catalogue()),
            "tools/call" => return self.call_tool(id, params),
            "resources/list" => no_cursor(params).map(|()| catalog::resources()),
            "resources/templates/list" => no_cursor(params).map(|()| catalog::resource_templates()),
            "resources/read" => catalog::read_resource(params),
            "resources/subscribe" | "resources/unsubscribe" => catalog::subscription(params),
            "prompts/list" => no_cursor(params).map(|()| catalog::prompts()),
            "prompts/get" => catalog::get_prompt(params),
            "completion/complete" => catalog::complete(params),
            _ => Err(RpcError::new(METHOD_NOT_FOUND, format!("Method not found: {method}"))),
        };
        Ok(outcome.into())
    }

    /// `initialize`: remember the client's capabilities, echo a supported protocol version
    /// (otherwise offer our newest).
    fn initialize(&mut self, params: Option<&Map<String, Value>>) -> Value {
        self.client_capabilities = params.and_then(|p| p.get("capabilities")).cloned();
        let requested = params.and_then(|p| p.get("protocolVersion")).and_then(Value::as_str);
        let version = SUPPORTED_VERSIONS
            .into_iter()
            .find(|supported| Some(*supported) == requested)
            .unwrap_or(SUPPORTED_VERSIONS[0]);
        json!({
            "protocolVersion": version,
            "capabilities": {
                "tools": {"listChanged": false},
                "resources": {"subscribe": true, "listChanged": false},
                "prompts": {"listChanged": false},
                "logging": {},
                "completions": {}
            },
            "serverInfo": {
                "name": SERVER_NAME,
                "title": "Switchboard conformance fixture",
                "version": env!("CARGO_PKG_VERSION")
            }
        })
    }

    /// `logging/setLevel`: filters this process's later `notifications/message`.
    fn set_level(&mut self, params: Option<&Map<String, Value>>) -> Result<Value, RpcError> {
        let level = params.and_then(|p| p.get("level")).and_then(Value::as_str);
        match level.and_then(LogLevel::from_name) {
            Some(level) => {
                self.log_level = level;
                Ok(json!({}))
            }
            None => Err(RpcError::invalid_params(
                "Invalid params: 'level' must be one of debug, info, notice, warning, error, \
                 critical, alert, emergency",
            )),
        }
    }

    /// Whether the client declared `capability` in this process's `initialize` (assumed
    /// when there was none, or it carried no `capabilities`).
    fn client_supports(&self, capability: &str) -> bool {
        match &self.client_capabilities {
            Some(Value::Object(capabilities)) => {
                capabilities.get(capability).is_some_and(|value| !value.is_null())
            }
            _ => true,
        }
    }

    /// Sends `notifications/message` at `level`, unless filtered out by `logging/setLevel`.
    fn log(&mut self, level: LogLevel, text: &str) -> io::Result<()> {
        if level < self.log_level {
            return Ok(());
        }
        let notification = json!({
            "jsonrpc": "2.0",
            "method": "notifications/message",
            "params": {"level": level.name(), "logger": SERVER_NAME, "data": text}
        });
        send(&mut self.output, &notification)
    }

    /// Sends `notifications/progress` for `token`.
    fn progress(&mut self, token: &Value, progress: u64, total: u64, message: &str) -> io::Result<()> {
        let notification = json!({
            "jsonrpc": "2.0",
            "method": "notifications/progress",
            "params": {"progressToken": token, "progress": progress, "total": total, "message": message}
        });
        send(&mut self.output, &notification)
    }

    /// Sends the client a request and waits for its answer, serving whatever else arrives
    /// meanwhile (see the module docs). `serving` is the id of the request that asks.
    fn ask_client(&mut self, serving: &Value, method: &str, params: Value) -> io::Result<ClientAnswer> {
        self.sent_requests += 1;
        let own_id = Value::String(format!("{OWN_ID_PREFIX}{}", self.sent_requests));
        let request = json!({"jsonrpc": "2.0", "id": own_id, "method": method, "params": params});
        send(&mut self.output, &request)?;
        loop {
            let Some(message) = self.receive()? else {
                eprintln!("{SERVER_NAME}: input closed while waiting for the answer to {method}");
                return Ok(ClientAnswer::Closed);
            };
            match message {
                Incoming::Response { id, outcome } if id == own_id => {
                    return Ok(match outcome {
                        Ok(result) => ClientAnswer::Result(result),
                        Err(error) => ClientAnswer::Error(error),
                    });
                }
                Incoming::Response { id, .. } => {
                    eprintln!("{SERVER_NAME}: ignoring a response to {id}, which is not awaited");
                }
                Incoming::Notification { method: cancelled, params }
                    if cancelled == "notifications/cancelled"
                        && params.as_ref().and_then(|p| p.get("requestId")) == Some(serving) =>
                {
                    let notice = json!({
                        "jsonrpc": "2.0",
                        "method": "notifications/cancelled",
                        "params": {"requestId": own_id, "reason": "the tool call was cancelled"}
                    });
                    send(&mut self.output, &notice)?;
                    return Ok(ClientAnswer::Cancelled);
                }
                Incoming::Notification { .. } => {}
                Incoming::Request { id, method, params } => {
                    if self.nesting >= MAX_NESTING {
                        let error = RpcError::new(
                            INTERNAL_ERROR,
                            "Internal error: too many requests nested in waits for client answers",
                        );
                        send(&mut self.output, &error.into_response(&id))?;
                        continue;
                    }
                    self.nesting += 1;
                    let served = self.answer(&id, &method, params.as_ref());
                    self.nesting -= 1;
                    served?;
                }
            }
        }
    }
}

/// Classifies one line. `Ok(None)`: nothing to do (blank line). `Err`: the error to send
/// back, with the id to send it with.
fn parse(line: &[u8]) -> Result<Option<Incoming>, (RpcError, Value)> {
    if line.trim_ascii().is_empty() {
        return Ok(None);
    }
    let message: Value = serde_json::from_slice(line).map_err(|error| {
        eprintln!("{SERVER_NAME}: unparsable message: {error}");
        (RpcError::new(PARSE_ERROR, format!("Parse error: {error}")), Value::Null)
    })?;
    let Value::Object(mut message) = message else {
        return Err((RpcError::new(INVALID_REQUEST, "Invalid Request: expected a JSON object"), Value::Null));
    };
    let params = message.remove("params");
    let method = match message.remove("method") {
        None => None,
        Some(Value::String(method)) => Some(method),
        Some(_) => {
            let id = message.remove("id").filter(|id| id.is_string() || id.is_number());
            let error = RpcError::new(INVALID_REQUEST, "Invalid Request: method must be a string");
            return Err((error, id.unwrap_or(Value::Null)));
        }
    };
    let id = message.remove("id");
    match (method, id) {
        // No id: a notification (or something malformed shaped like one). A reply could
        // not be matched to anything, so none is ever sent.
        (Some(method), None) => Ok(Some(Incoming::Notification { method, params })),
        (None, None) => Ok(None),
        (Some(method), Some(id)) if id.is_string() || id.is_number() => {
            Ok(Some(Incoming::Request { id, method, params }))
        }
        (Some(_), Some(_)) => Err((
            RpcError::new(INVALID_REQUEST, "Invalid Request: id must be a string or a number"),
            Value::Null,
        )),
        (None, Some(id)) => {
            if let Some(error) = message.remove("error") {
                Ok(Some(Incoming::Response { id, outcome: Err(error) }))
            } else if let Some(result) = message.remove("result") {
                Ok(Some(Incoming::Response { id, outcome: Ok(result) }))
            } else {
                let id = if id.is_string() || id.is_number() { id } else { Value::Null };
                Err((RpcError::new(INVALID_REQUEST, "Invalid Request: expected a method"), id))
            }
        }
    }
}

/// `params` as an object; absent or `null` is `None`, anything else is invalid.
fn object_params(params: Option<&Value>) -> Result<Option<&Map<String, Value>>, RpcError> {
    match params {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(_) => Err(RpcError::invalid_params("Invalid params: params must be an object")),
    }
}

/// Lists fit on one page, so any cursor is one we never issued.
fn no_cursor(params: Option<&Map<String, Value>>) -> Result<(), RpcError> {
    match params.and_then(|p| p.get("cursor")) {
        None | Some(Value::Null) => Ok(()),
        Some(_) => Err(RpcError::invalid_params("Invalid params: unknown cursor")),
    }
}
