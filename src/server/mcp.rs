//! MCP Streamable HTTP at `/mcp`, legacy era (2025-03-26 … 2025-11-25): the adapter.
//!
//! It checks the transport (Accept, protocol version, content type, body framing; Origin
//! and Host are checked for every route by `guard.rs`), reads the session from
//! `Mcp-Session-Id` and the credentials from `Authorization: Bearer`, and hands each
//! JSON-RPC message to the gateway. What the server sends before its response streams to
//! the client as SSE on the same POST ([`SseRelay`]); answers to the server's own requests and `notifications/cancelled`
//! may reach any worker and are routed by the gateway.
//!
//! **Invariant:** payloads are forwarded as raw JSON; only ids are rewritten (and, for
//! several servers, tool names).

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, stream};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

use super::body as bounded;
use super::error::{Rejected, json, rpc_answer, rpc_error_line, rpc_limit_line, rpc_rejection};
use super::{AppState, bearer_token};
use crate::gateway::{Bound, Door, GatewayError, Operation, Presented};
use crate::protocol::jsonrpc::{self, Envelope, Kind};
use crate::protocol::{SESSION_HEADER, SUPPORTED_VERSIONS, capabilities_problem};
use crate::telemetry::events::{Emit, Limit, LimitHit};
use crate::upstream::{Relay, ServerMessage};

/// Server messages buffered between a child and a slow SSE client (notifications beyond
/// it are dropped, requests wait).
const RELAY_BUFFER: usize = 64;

/// The syslog levels of `logging/setLevel`.
const LOG_LEVELS: [&str; 8] =
    ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];

fn check_accept(headers: &HeaderMap) -> Result<(), Rejected> {
    let accept = headers.get(header::ACCEPT).and_then(|h| h.to_str().ok()).unwrap_or("");
    let any = accept.contains("*/*");
    if any || (accept.contains("application/json") && accept.contains("text/event-stream")) {
        Ok(())
    } else {
        Err(Rejected::NotAcceptable)
    }
}

fn check_protocol_version(headers: &HeaderMap) -> Result<(), Rejected> {
    match headers.get("mcp-protocol-version").map(|v| v.to_str().unwrap_or("")) {
        Some(v) if !SUPPORTED_VERSIONS.contains(&v) => {
            Err(Rejected::ProtocolVersion { asked: v.to_string(), supported: SUPPORTED_VERSIONS.join(", ") })
        }
        _ => Ok(()),
    }
}

fn check_content_type(headers: &HeaderMap) -> Result<(), Rejected> {
    if super::guard::is_json(headers) { Ok(()) } else { Err(Rejected::MediaType) }
}

/// Credentials presented on this request: `Authorization: Bearer T` → `{"token": T}`.
fn presented_credentials(headers: &HeaderMap) -> serde_json::Value {
    match bearer_token(headers) {
        Some(t) => serde_json::json!({ "token": t }),
        None => serde_json::json!({}),
    }
}

/// The session of a request: present, existing, and bound to the same credentials.
async fn session_of(state: &AppState, headers: &HeaderMap) -> Result<Bound, Response> {
    session_for(state, headers, None).await
}

/// [`session_of`] for what a request becomes: a tool call's session is read together with
/// the call's cache entry (one store round trip on a hit).
async fn session_for(
    state: &AppState,
    headers: &HeaderMap,
    operation: Option<&Operation>,
) -> Result<Bound, Response> {
    let Some(raw) = headers.get(SESSION_HEADER) else {
        return Err(Rejected::NoSession.respond(&state.metrics, "null"));
    };
    let raw = raw.to_str().unwrap_or("");
    let presented = Presented { token: bearer_token(headers), door: Door::Mcp };
    state.bind_for(raw, presented, operation).await.map_err(|e| rpc_rejection("null", e))
}

pub(super) async fn delete(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let session = match session_of(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match state.delete_session(&session.id).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => rpc_rejection("null", e),
    }
}

pub(super) async fn get() -> Response {
    // No standalone server-to-client stream: each child lives for one request only.
    let mut response = super::ApiError::method_not_allowed("POST, DELETE").into_response();
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST, DELETE"));
    response
}

pub(super) async fn post(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let text = match read_message(&state, &headers, body).await {
        Ok(text) => text,
        Err(rejected) => return rejected.respond(&state.metrics, "null"),
    };
    if text.trim_start().starts_with('[') {
        if let Err(rejected) = check_protocol_version(&headers) {
            return rejected.respond(&state.metrics, "null");
        }
        return batch(&state, &headers, &text).await;
    }
    let Ok(message) = Envelope::parse(&text) else {
        if let Err(rejected) = check_protocol_version(&headers) {
            return rejected.respond(&state.metrics, "null");
        }
        let rejected = if serde_json::from_str::<serde_json::Value>(&text).is_ok() {
            Rejected::Invalid("Invalid Request: not a JSON-RPC message")
        } else {
            Rejected::Parse("Parse error: body is not valid JSON".into())
        };
        return rejected.respond(&state.metrics, "null");
    };
    // The era is chosen per request: a modern one is served statelessly (`modern.rs`).
    if super::modern::opens_modern(&headers, message.method.as_deref(), message.params) {
        return super::modern::post(&state, &headers, &message).await;
    }
    if let Err(rejected) = check_protocol_version(&headers) {
        return rejected.respond(&state.metrics, "null");
    }
    match message.kind() {
        Kind::Invalid => Rejected::Invalid("Invalid Request").respond(&state.metrics, "null"),
        Kind::Request if message.method.as_deref() == Some("initialize") => {
            initialize(&state, &headers, &message).await
        }
        kind => {
            let method = message.method.as_deref().unwrap_or_default();
            let operation = (kind == Kind::Request).then(|| state.operation(method, message.params));
            let bound_for = operation.as_ref().and_then(|o| o.as_ref().ok());
            let session = match session_for(&state, &headers, bound_for).await {
                Ok(s) => s,
                Err(r) => return r,
            };
            match (kind, operation) {
                (Kind::Notification, _) => notification(&state, &session, &message).await,
                (Kind::Response, _) => response(&state, &session, &message).await,
                (_, operation) => request(state, session, &message, operation).await,
            }
        }
    }
}

/// The checks every POST passes (after `Origin` and `Host`, checked for every route by
/// `guard.rs`), then its body as text.
async fn read_message(state: &AppState, headers: &HeaderMap, request: Body) -> Result<String, Rejected> {
    check_accept(headers)?;
    // The protocol version is checked once the era is known (see `post`).
    check_content_type(headers)?;
    let bytes = bounded::read(request, state.config.max_body_bytes).await.map_err(|e| match e {
        GatewayError::BodyTooLarge(limit) => Rejected::BodyTooLarge(limit),
        e => Rejected::Parse(e.to_string()),
    })?;
    String::from_utf8(bytes.to_vec()).map_err(|_| Rejected::Parse("Parse error: body is not UTF-8".into()))
}

async fn initialize(state: &AppState, headers: &HeaderMap, message: &Envelope<'_>) -> Response {
    let id = message.id.map_or("null", RawValue::get);
    if headers.contains_key(SESSION_HEADER) {
        return Rejected::AlreadyInitialized.respond(&state.metrics, id);
    }
    let params: serde_json::Value =
        message.params.and_then(|p| serde_json::from_str(p.get()).ok()).unwrap_or(serde_json::Value::Null);
    let requested = params.get("protocolVersion").and_then(|v| v.as_str()).unwrap_or("");
    let version = if SUPPORTED_VERSIONS.contains(&requested) { requested } else { SUPPORTED_VERSIONS[0] };
    let capabilities = params.get("capabilities").cloned().unwrap_or_else(|| serde_json::json!({}));
    if let Some(problem) = capabilities_problem(&capabilities) {
        // Kept in the session and replayed into every child's `initialize`: bounded.
        LimitHit(Limit::Capabilities).emit(&state.metrics);
        return Rejected::Capabilities(problem).respond(&state.metrics, id);
    }
    let client = serde_json::json!({
        "clientInfo": params.get("clientInfo").cloned().unwrap_or(serde_json::Value::Null),
        "capabilities": capabilities,
    });
    let (session, result) = match state.initialize(&presented_credentials(headers), client, version).await {
        Ok(done) => done,
        Err(e) => return rpc_rejection(id, e),
    };
    let mut response = json(StatusCode::OK, jsonrpc::response(id, &result.to_string()));
    if let Ok(value) = HeaderValue::from_str(session.as_str()) {
        response.headers_mut().insert(SESSION_HEADER, value);
    }
    response
}

async fn notification(state: &AppState, session: &Bound, message: &Envelope<'_>) -> Response {
    if message.method.as_deref() == Some("notifications/cancelled")
        && let Some(request_id) = message
            .params
            .and_then(|p| serde_json::from_str::<serde_json::Value>(p.get()).ok())
            .and_then(|p| p.get("requestId").map(|r| r.to_string()))
    {
        state.cancel(&session.id, &request_id).await;
    }
    StatusCode::ACCEPTED.into_response()
}

async fn response(state: &AppState, session: &Bound, message: &Envelope<'_>) -> Response {
    let Some(id) = message.id.and_then(|i| serde_json::from_str::<String>(i.get()).ok()) else {
        return StatusCode::ACCEPTED.into_response();
    };
    let result = message.result.map(RawValue::get);
    let error = message.error.map(RawValue::get);
    match state.answer(&session.id, &id, result, error).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => rpc_rejection("null", e),
    }
}

/// A request of a bound session; `operation` is what it becomes, when already decided.
async fn request(
    state: AppState,
    session: Bound,
    message: &Envelope<'_>,
    operation: Option<Result<Operation, GatewayError>>,
) -> Response {
    let id = message.id.map_or("null", RawValue::get).to_string();
    let method = message.method.as_deref().unwrap_or_default();
    match method {
        "ping" => json(StatusCode::OK, jsonrpc::response(&id, "{}")),
        "logging/setLevel" => set_log_level(&state, &session, &id, message.params).await,
        _ => match operation.unwrap_or_else(|| state.operation(method, message.params)) {
            Ok(operation) => SseRelay::start(&state, session, id, operation).respond().await,
            Err(e) => json(StatusCode::OK, rpc_error_line(&id, e)),
        },
    }
}

/// `logging/setLevel`: kept in the session, so every child spawned for it gets the level.
async fn set_log_level(state: &AppState, session: &Bound, id: &str, params: Option<&RawValue>) -> Response {
    let level = params
        .and_then(|p| serde_json::from_str::<serde_json::Value>(p.get()).ok())
        .and_then(|p| p.get("level").and_then(|l| l.as_str()).map(String::from));
    let Some(level) = level.filter(|l| LOG_LEVELS.contains(&l.as_str())) else {
        let invalid = GatewayError::BadRequest("level must be one of the syslog levels".into());
        return json(StatusCode::OK, rpc_error_line(id, invalid));
    };
    match state.set_log_level(&session.id, &level).await {
        Ok(()) => json(StatusCode::OK, jsonrpc::response(id, "{}")),
        Err(e) => rpc_rejection(id, e),
    }
}

/// How a call running for a request ended.
enum Finished {
    /// The raw result, or why there is none.
    Done(Result<String, GatewayError>),
    /// The client cancelled it: it expects no answer.
    Cancelled,
}

/// Aborts the call when the response (or its stream) is dropped: the client went away.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One request on its way to the client. The call runs in its own task (cancellable from
/// any worker); whatever comes first decides the answer: the result alone is plain JSON,
/// anything the server sends before it turns the answer into an SSE stream that ends
/// with the result. Dropping the relay (the client went away) aborts the call.
struct SseRelay {
    /// The client's request id, raw JSON.
    id: String,
    /// What the server sends before its response.
    events: mpsc::Receiver<ServerMessage>,
    /// The call's end; `None` once it was read.
    done: Option<oneshot::Receiver<Finished>>,
    _call: AbortOnDrop,
}

impl SseRelay {
    /// Starts the call for `session` and registers it for cancellation.
    fn start(state: &AppState, session: Bound, id: String, operation: Operation) -> Self {
        let (events_tx, events) = mpsc::channel::<ServerMessage>(RELAY_BUFFER);
        let (done_tx, done) = oneshot::channel::<Finished>();
        let cancel = state.inflight.register(session.id.as_str(), &id);
        let state = state.clone();
        let request_id = id.clone();
        let task = tokio::spawn(async move {
            let relay = Relay {
                session: session.id.as_str().to_string(),
                events: events_tx,
                router: state.relay.clone(),
            };
            let call = state.perform(&session, operation, Some(&relay));
            let finished = tokio::select! {
                outcome = call => Finished::Done(outcome),
                () = cancel.cancelled() => Finished::Cancelled,
            };
            state.inflight.remove(session.id.as_str(), &request_id);
            let _ = done_tx.send(finished);
        });
        Self { id, events, done: Some(done), _call: AbortOnDrop(task) }
    }

    /// Waits for the first thing the call produces and answers with it.
    async fn respond(mut self) -> Response {
        let Some(done) = self.done.as_mut() else { return StatusCode::ACCEPTED.into_response() };
        let first = tokio::select! {
            biased;
            Some(message) = self.events.recv() => message,
            finished = done => return match finished {
                Ok(Finished::Done(Ok(result))) => json(StatusCode::OK, jsonrpc::response(&self.id, &result)),
                Ok(Finished::Done(Err(e))) => rpc_answer(&self.id, e),
                // Cancelled: the client does not expect an answer.
                Ok(Finished::Cancelled) | Err(_) => StatusCode::ACCEPTED.into_response(),
            },
        };
        let rest =
            stream::unfold(self, |mut relay| async move { relay.next().await.map(|event| (event, relay)) });
        let stream = stream::once(async move { sse_event(first) }).chain(rest).map(Ok::<_, Infallible>);
        let mut response = Sse::new(stream).keep_alive(KeepAlive::default()).into_response();
        response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
        response
    }

    /// The next SSE event: a server message, or the final answer; `None` after it.
    async fn next(&mut self) -> Option<Event> {
        let done = self.done.as_mut()?;
        tokio::select! {
            biased;
            Some(message) = self.events.recv() => Some(sse_event(message)),
            finished = done => {
                self.done = None;
                match finished {
                    Ok(Finished::Done(outcome)) => Some(Event::default().data(final_line(&self.id, outcome))),
                    Ok(Finished::Cancelled) | Err(_) => None,
                }
            }
        }
    }
}

fn sse_event(message: ServerMessage) -> Event {
    match message {
        ServerMessage::Notification(line) | ServerMessage::Request(line) => Event::default().data(line),
    }
}

/// The JSON-RPC answer to the client for a finished call.
fn final_line(id: &str, outcome: Result<String, GatewayError>) -> String {
    match outcome {
        Ok(result) => jsonrpc::response(id, &result),
        Err(e) => rpc_error_line(id, e),
    }
}

/// A JSON-RPC batch: only for sessions that negotiated 2025-03-26; answered as one JSON array.
/// At most `max_batch_items` messages; once the answers reach `max_batch_answer_bytes`, each
/// remaining request is answered with an error naming the limit, without running.
async fn batch(state: &AppState, headers: &HeaderMap, text: &str) -> Response {
    let session = match session_of(state, headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if session.record.protocol_version.as_deref() != Some("2025-03-26") {
        return Rejected::Batch.respond(&state.metrics, "null");
    }
    let Ok(items) = serde_json::from_str::<Vec<Box<RawValue>>>(text) else {
        return Rejected::Parse("Parse error".into()).respond(&state.metrics, "null");
    };
    let max_items = state.config.max_batch_items;
    if items.len() > max_items {
        LimitHit(Limit::BatchItems).emit(&state.metrics);
        return Rejected::BatchTooLarge(max_items).respond(&state.metrics, "null");
    }
    let budget = state.config.max_batch_answer_bytes;
    let over_budget = |id: &str| {
        LimitHit(Limit::BatchAnswers).emit(&state.metrics);
        rpc_limit_line(
            id,
            &format!(
                "the batch's answers reached max_batch_answer_bytes ({budget} bytes): this request was \
                 not run, or its answer was left out; send it on its own"
            ),
        )
    };
    let mut answers = String::from("[");
    let mut spent = 0usize;
    let mut full = false;
    for item in &items {
        let Ok(message) = Envelope::parse(item.get()) else { continue };
        if message.kind() != Kind::Request {
            continue;
        }
        let id = message.id.map_or("null", RawValue::get);
        let method = message.method.as_deref().unwrap_or_default();
        let line = if full {
            over_budget(id)
        } else if method == "ping" {
            jsonrpc::response(id, "{}")
        } else {
            match state.operation(method, message.params) {
                Ok(operation) => final_line(id, state.perform(&session, operation, None).await),
                Err(e) => rpc_error_line(id, e),
            }
        };
        let line = if !full && spent + line.len() > budget {
            full = true;
            over_budget(id)
        } else {
            line
        };
        if !full {
            spent += line.len();
        }
        if answers.len() > 1 {
            answers.push(',');
        }
        answers.push_str(&line);
    }
    if answers.len() == 1 {
        return StatusCode::ACCEPTED.into_response();
    }
    answers.push(']');
    json(StatusCode::OK, answers)
}
