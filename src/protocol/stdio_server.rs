//! The kit the project's own stdio MCP servers are built on (the demo server and the
//! conformance fixture): the serve loop that reads lines (bounded), parses the envelope,
//! answers malformed input, hands requests to the server and writes the answers.
//!
//! A server implements [`StdioServer`]: it owns a [`Connection`] and dispatches one
//! request at a time; [`StdioServer::serve`] does the rest. Messages are
//! [`serde_json::Value`]s: these servers answer, they forward nothing.
//!
//! # Rules at the edges (the same for every server built on this)
//! * A line that is not JSON (or not UTF-8, or longer than [`MAX_MESSAGE_BYTES`]) gets a
//!   `-32700` error with id `null`; serving goes on. A non-object gets `-32600` (id
//!   `null`); so does a request whose id is not a string or a number, or whose method is
//!   not a string (with its id when that one is usable).
//! * A message without an `id` is a notification and is never answered, whatever its
//!   method (or lack of one). Blank lines are skipped.
//! * `jsonrpc: "2.0"` is not checked: the gateway, not these servers, is under test.
//!
//! Blocking std I/O only: no tokio, no threads. Diagnostics go to stderr, prefixed with
//! the server's name; stdout carries only JSON-RPC messages, one per line, flushed as
//! written.

use std::io::{self, BufRead, Write};

use serde_json::{Map, Value, json};

use super::jsonrpc::{RpcError, code};
use super::lines::{Frame, read_message, send};

/// Longest message accepted, so a runaway writer cannot grow a server's buffer forever;
/// the largest legitimate one (an `echo` of a long text) is far smaller.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// One well-formed message from the client.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// Must be answered.
    Request { id: Value, method: String, params: Option<Value> },
    /// Never answered.
    Notification { method: String, params: Option<Value> },
    /// A response to one of the server's own requests: `outcome` is its `result` or its
    /// `error` object.
    Response { id: Value, outcome: Result<Value, Value> },
}

/// How a request ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
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

/// One stdio session's streams.
pub struct Connection<R, W> {
    /// The server's name, prefixed to its diagnostics on stderr.
    name: &'static str,
    /// The client's messages.
    input: R,
    /// Where answers go.
    output: W,
    /// Read buffer, reused for every line.
    line: Vec<u8>,
}

impl<R: BufRead, W: Write> Connection<R, W> {
    pub fn new(name: &'static str, input: R, output: W) -> Self {
        Self { name, input, output, line: Vec::new() }
    }

    /// The next well-formed message, or `None` at end of input. Malformed lines are
    /// answered with JSON-RPC errors here and skipped.
    pub fn receive(&mut self) -> io::Result<Option<Incoming>> {
        loop {
            match read_message(&mut self.input, &mut self.line, MAX_MESSAGE_BYTES)? {
                Frame::End => return Ok(None),
                Frame::TooLong => {
                    eprintln!("{}: dropped a message longer than {MAX_MESSAGE_BYTES} bytes", self.name);
                    let message = format!("Parse error: message longer than {MAX_MESSAGE_BYTES} bytes");
                    self.send(&RpcError::new(code::PARSE_ERROR, message).into_response(&Value::Null))?;
                }
                Frame::Message => match parse(&self.line) {
                    Ok(None) => {}
                    Ok(Some(message)) => return Ok(Some(message)),
                    Err((error, id)) => {
                        if error.code == code::PARSE_ERROR {
                            eprintln!("{}: unparsable message: {}", self.name, error.message);
                        }
                        self.send(&error.into_response(&id))?;
                    }
                },
            }
        }
    }

    /// Writes one message (a notification, a request of the server's own) as a line.
    pub fn send(&mut self, message: &Value) -> io::Result<()> {
        send(&mut self.output, message)
    }

    /// Writes the answer to request `id` (none if it was cancelled).
    pub fn answer(&mut self, id: &Value, reply: Reply) -> io::Result<()> {
        let response = match reply {
            Reply::Done(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Reply::Failed(error) => error.into_response(id),
            Reply::Cancelled => {
                eprintln!("{}: request {id} cancelled by the client; not answering it", self.name);
                return Ok(());
            }
        };
        self.send(&response)
    }
}

/// A stdio MCP server: a [`Connection`] and a way to answer one request.
pub trait StdioServer<R: BufRead, W: Write> {
    /// The session's streams.
    fn connection(&mut self) -> &mut Connection<R, W>;

    /// Serves request `id`; may talk to the client meanwhile through [`Self::connection`].
    fn dispatch(&mut self, id: &Value, method: &str, params: Option<&Value>) -> io::Result<Reply>;

    /// Serves request `id` and writes its answer.
    fn answer(&mut self, id: &Value, method: &str, params: Option<&Value>) -> io::Result<()> {
        let reply = self.dispatch(id, method, params)?;
        self.connection().answer(id, reply)
    }

    /// Serves requests until input ends. Between requests nothing is in flight, so
    /// notifications (initialized, a late cancellation, ...) and stray responses need
    /// no action. Returns `Ok(())` at end of input, an error only when reading or
    /// writing fails.
    fn serve(&mut self) -> io::Result<()> {
        while let Some(message) = self.connection().receive()? {
            if let Incoming::Request { id, method, params } = message {
                self.answer(&id, &method, params.as_ref())?;
            }
        }
        Ok(())
    }
}

/// Runs `serve` over the process's stdin and stdout with the process environment: the
/// `run()` of a server binary. A closed stdout (the client went away) ends serving
/// quietly.
pub fn run_on_stdio(
    serve: impl FnOnce(
        io::StdinLock<'static>,
        io::StdoutLock<'static>,
        &dyn Fn(&str) -> Option<String>,
    ) -> io::Result<()>,
) -> io::Result<()> {
    match serve(io::stdin().lock(), io::stdout().lock(), &|key| std::env::var(key).ok()) {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Runs `serve` (a server's `serve(input, output, env)`) over `input` with the
/// environment `env` (name, value pairs) and returns every message it wrote: the way the
/// tests of the servers built on this kit drive them. An error if serving failed or a
/// line written is not JSON.
pub fn transcript(
    input: &[u8],
    env: &[(&str, &str)],
    serve: impl FnOnce(&[u8], &mut Vec<u8>, &dyn Fn(&str) -> Option<String>) -> io::Result<()>,
) -> io::Result<Vec<Value>> {
    let lookup = |key: &str| env.iter().find(|(name, _)| *name == key).map(|(_, value)| (*value).to_owned());
    let mut output = Vec::new();
    serve(input, &mut output, &lookup)?;
    if !output.is_empty() && output.last() != Some(&b'\n') {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "the last line written is unterminated"));
    }
    output
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)))
        .collect()
}

/// Classifies one line. `Ok(None)`: nothing to do (a blank line, an id-less message
/// without a usable method). `Err`: the error to send back, with the id to send it with.
pub fn parse(line: &[u8]) -> Result<Option<Incoming>, (RpcError, Value)> {
    if line.trim_ascii().is_empty() {
        return Ok(None);
    }
    let message: Value = serde_json::from_slice(line)
        .map_err(|error| (RpcError::new(code::PARSE_ERROR, format!("Parse error: {error}")), Value::Null))?;
    let Value::Object(mut message) = message else {
        let error = RpcError::new(code::INVALID_REQUEST, "Invalid Request: expected a JSON object");
        return Err((error, Value::Null));
    };
    let params = message.remove("params");
    let id = message.remove("id");
    let usable_id =
        |id: Option<Value>| id.filter(|id| id.is_string() || id.is_number()).unwrap_or(Value::Null);
    let method = match message.remove("method") {
        None => None,
        Some(Value::String(method)) => Some(method),
        // No id: something malformed shaped like a notification; an answer could not be
        // matched to anything, so none is ever sent.
        Some(_) if id.is_none() => return Ok(None),
        Some(_) => {
            let error = RpcError::new(code::INVALID_REQUEST, "Invalid Request: method must be a string");
            return Err((error, usable_id(id)));
        }
    };
    match (method, id) {
        (Some(method), None) => Ok(Some(Incoming::Notification { method, params })),
        (None, None) => Ok(None),
        (Some(method), Some(id)) if id.is_string() || id.is_number() => {
            Ok(Some(Incoming::Request { id, method, params }))
        }
        (Some(_), Some(_)) => Err((
            RpcError::new(code::INVALID_REQUEST, "Invalid Request: id must be a string or a number"),
            Value::Null,
        )),
        (None, Some(id)) => {
            if let Some(error) = message.remove("error") {
                Ok(Some(Incoming::Response { id, outcome: Err(error) }))
            } else if let Some(result) = message.remove("result") {
                Ok(Some(Incoming::Response { id, outcome: Ok(result) }))
            } else {
                let error = RpcError::new(code::INVALID_REQUEST, "Invalid Request: expected a method");
                Err((error, usable_id(Some(id))))
            }
        }
    }
}

/// `params` as an object; absent or `null` is `None`, anything else is invalid.
pub fn object_params(params: Option<&Value>) -> Result<Option<&Map<String, Value>>, RpcError> {
    match params {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(_) => Err(RpcError::invalid_params("Invalid params: params must be an object")),
    }
}

/// For lists that fit on one page: any cursor is one the server never issued.
pub fn no_cursor(params: Option<&Map<String, Value>>) -> Result<(), RpcError> {
    match params.and_then(|p| p.get("cursor")) {
        None | Some(Value::Null) => Ok(()),
        Some(_) => Err(RpcError::invalid_params("Invalid params: unknown cursor")),
    }
}

#[cfg(test)]
mod tests;
