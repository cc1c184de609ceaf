//! MCP Streamable HTTP at `/mcp`, legacy era (2025-03-26 … 2025-11-25).
//!
//! `initialize` creates the session in the store (credentials from
//! `Authorization: Bearer`, bound to the session); every other request is
//! forwarded to a freshly spawned server. What the server sends before its
//! response streams to the client as SSE on the same POST; answers to the
//! server's own requests and `notifications/cancelled` may reach any worker and
//! are routed to the one holding the child through store pub/sub.
//!
//! **Invariant:** payloads are forwarded as raw JSON; only ids are rewritten.

// The checks return the finished error response; boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::calls::{CallFailure, ToolCall};
use super::routes::{SESSION_HEADER, create_session, credentials, load_session, read_body};
use crate::protocol::SUPPORTED_VERSIONS;
use crate::protocol::jsonrpc::{self, Envelope, Kind, code};
use crate::session::{SessionId, SessionRecord};
use crate::upstream::{Client, Outcome, Relay, ReplyRouter, ServerMessage, UpstreamError};

/// JSON-RPC code for gateway-level failures (implementation-defined range).
const GATEWAY_ERROR: i64 = -32000;

/// An answer that is a JSON-RPC error with an HTTP status.
fn rpc_error(status: StatusCode, id: &str, code: i64, message: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], jsonrpc::error_response(id, code, message))
        .into_response()
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn is_loopback_host(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "::1")
}

/// `host[:port]` → host.
fn host_part(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.find(']').map_or(authority, |i| &authority[..=i]);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

/// Origin and Host checks against DNS rebinding.
fn check_origin_and_host(state: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let authority = origin.split_once("://").map_or("", |(_, rest)| rest);
        let allowed = is_loopback_host(host_part(authority))
            || state.config.http.allowed_origins.iter().any(|o| o == origin);
        if !allowed {
            return Err(rpc_error(
                StatusCode::FORBIDDEN,
                "null",
                GATEWAY_ERROR,
                "Forbidden: invalid Origin header",
            ));
        }
    }
    if state.config.listen.ip().is_loopback() {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        let name = host_part(host);
        if !(is_loopback_host(name) || state.config.http.allowed_hosts.iter().any(|h| h == name)) {
            return Err(rpc_error(
                StatusCode::MISDIRECTED_REQUEST,
                "null",
                GATEWAY_ERROR,
                "Misdirected Request: invalid Host header",
            ));
        }
    }
    Ok(())
}

fn check_accept(headers: &HeaderMap) -> Result<(), Response> {
    let accept = headers.get(header::ACCEPT).and_then(|h| h.to_str().ok()).unwrap_or("");
    let any = accept.contains("*/*");
    if any || (accept.contains("application/json") && accept.contains("text/event-stream")) {
        Ok(())
    } else {
        Err(rpc_error(
            StatusCode::NOT_ACCEPTABLE,
            "null",
            GATEWAY_ERROR,
            "Not Acceptable: Client must accept both application/json and text/event-stream",
        ))
    }
}

fn check_protocol_version(headers: &HeaderMap) -> Result<(), Response> {
    match headers.get("mcp-protocol-version").map(|v| v.to_str().unwrap_or("")) {
        Some(v) if !SUPPORTED_VERSIONS.contains(&v) => Err(rpc_error(
            StatusCode::BAD_REQUEST,
            "null",
            GATEWAY_ERROR,
            &format!(
                "Bad Request: unsupported protocol version {v} (supported: {})",
                SUPPORTED_VERSIONS.join(", ")
            ),
        )),
        _ => Ok(()),
    }
}

/// Credentials presented on this request: `Authorization: Bearer T` → `{"token": T}`.
fn presented_credentials(headers: &HeaderMap) -> serde_json::Value {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim);
    match token {
        Some(t) => serde_json::json!({ "token": t }),
        None => serde_json::json!({}),
    }
}

fn same_token(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    let hash =
        |v: &serde_json::Value| v.get("token").and_then(|t| t.as_str()).map(|t| blake3::hash(t.as_bytes()));
    // blake3::Hash compares in constant time.
    hash(a) == hash(b)
}

/// The session of a request: present, existing, and bound to the same credentials.
async fn session_of(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(SessionId, crate::session::SessionRecord, serde_json::Value), Response> {
    let not_found = || rpc_error(StatusCode::NOT_FOUND, "null", GATEWAY_ERROR, "Session not found");
    let Some(raw) = headers.get(SESSION_HEADER) else {
        return Err(rpc_error(
            StatusCode::BAD_REQUEST,
            "null",
            code::INVALID_REQUEST,
            "Bad Request: no Mcp-Session-Id header; send initialize first",
        ));
    };
    let id = raw.to_str().ok().and_then(SessionId::parse).ok_or_else(not_found)?;
    let record = load_session(state, &id)
        .await
        .map_err(|e| if e.status == StatusCode::NOT_FOUND { not_found() } else { e.into_response() })?;
    let stored = credentials(state, &id, &record).map_err(IntoResponse::into_response)?;
    if !same_token(&stored, &presented_credentials(headers)) {
        // Another principal's session is, to this caller, no session at all.
        return Err(not_found());
    }
    Ok((id, record, stored))
}

pub(super) async fn delete(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = check_origin_and_host(&state, &headers) {
        return r;
    }
    let (id, _, _) = match session_of(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match state.store.delete(&id).await {
        Ok(_) => {
            forget_everywhere(&state, &id).await;
            state.metrics.session("deleted");
            StatusCode::OK.into_response()
        }
        Err(e) => super::ApiError::from(e).into_response(),
    }
}

pub(super) async fn get() -> Response {
    // No standalone server-to-client stream: each child lives for one request only.
    (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "POST, DELETE")]).into_response()
}

pub(super) async fn post(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    if let Err(r) = check_origin_and_host(&state, &headers)
        .and_then(|()| check_accept(&headers))
        .and_then(|()| check_protocol_version(&headers))
    {
        return r;
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|h| h.to_str().ok()).unwrap_or("");
    if !content_type.starts_with("application/json") {
        return rpc_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "null",
            GATEWAY_ERROR,
            "Unsupported Media Type: Content-Type must be application/json",
        );
    }
    let bytes = match read_body(&state, body).await {
        Ok(b) => b,
        Err(e) if e.status == StatusCode::PAYLOAD_TOO_LARGE => {
            return rpc_error(StatusCode::PAYLOAD_TOO_LARGE, "null", GATEWAY_ERROR, &e.message);
        }
        Err(e) => return rpc_error(StatusCode::BAD_REQUEST, "null", code::PARSE_ERROR, &e.message),
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            "null",
            code::PARSE_ERROR,
            "Parse error: body is not UTF-8",
        );
    };
    if text.trim_start().starts_with('[') {
        return batch(&state, &headers, text).await;
    }
    let Ok(message) = Envelope::parse(text) else {
        let status = if serde_json::from_str::<serde_json::Value>(text).is_ok() {
            (StatusCode::BAD_REQUEST, code::INVALID_REQUEST, "Invalid Request: not a JSON-RPC message")
        } else {
            (StatusCode::BAD_REQUEST, code::PARSE_ERROR, "Parse error: body is not valid JSON")
        };
        return rpc_error(status.0, "null", status.1, status.2);
    };
    match message.kind() {
        Kind::Invalid => rpc_error(StatusCode::BAD_REQUEST, "null", code::INVALID_REQUEST, "Invalid Request"),
        Kind::Request if message.method.as_deref() == Some("initialize") => {
            initialize(&state, &headers, &message).await
        }
        _ => {
            let (id, record, creds) = match session_of(&state, &headers).await {
                Ok(s) => s,
                Err(r) => return r,
            };
            match message.kind() {
                Kind::Notification => notification(&state, &id, &message).await,
                Kind::Response => response(&state, &id, &message).await,
                _ => request(state, id, &record, creds, &message).await,
            }
        }
    }
}

/// Capabilities and server info of the fronted server, cached per config hash.
async fn upstream_init(
    state: &AppState,
    server: &str,
    creds: &serde_json::Value,
) -> Result<serde_json::Value, UpstreamError> {
    let key = format!("init:{server}:{}", state.manager.config_hash(server).unwrap_or("none"));
    if let Ok(Some(cached)) = state.store.get_shared(&key).await
        && let Ok(value) = serde_json::from_str(&cached)
    {
        return Ok(value);
    }
    let Outcome { init, .. } =
        state.manager.call(server, creds, Client::default(), "ping", None, None).await?;
    let _ = state.store.put_shared(&key, init.get(), state.config.tools_cache_ttl).await;
    Ok(serde_json::from_str(init.get()).unwrap_or(serde_json::Value::Null))
}

async fn initialize(state: &AppState, headers: &HeaderMap, message: &Envelope<'_>) -> Response {
    let id = message.id.map_or("null", RawValue::get);
    if headers.contains_key(SESSION_HEADER) {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            id,
            code::INVALID_REQUEST,
            "Bad Request: already initialized",
        );
    }
    let params: serde_json::Value =
        message.params.and_then(|p| serde_json::from_str(p.get()).ok()).unwrap_or(serde_json::Value::Null);
    let requested = params.get("protocolVersion").and_then(|v| v.as_str()).unwrap_or("");
    let version = if SUPPORTED_VERSIONS.contains(&requested) { requested } else { SUPPORTED_VERSIONS[0] };
    let creds = presented_credentials(headers);
    let client = serde_json::json!({
        "clientInfo": params.get("clientInfo").cloned().unwrap_or(serde_json::Value::Null),
        "capabilities": params.get("capabilities").cloned().unwrap_or_else(|| serde_json::json!({})),
    });
    // Validate first so a refused principal never costs a spawn.
    if let Err(e) = state.auth.verify(&creds).await {
        let e = super::ApiError::from(e);
        return rpc_error(e.status, id, GATEWAY_ERROR, &e.message);
    }
    let names = state.manager.server_names();
    let mut capabilities = serde_json::Map::new();
    let mut server_info = serde_json::json!({"name": "switchboard", "version": env!("CARGO_PKG_VERSION")});
    let mut instructions = None;
    for server in &names {
        let init = match upstream_init(state, server, &creds).await {
            Ok(init) => init,
            Err(e) => return rpc_error(StatusCode::BAD_GATEWAY, id, GATEWAY_ERROR, &e.to_string()),
        };
        if let Some(caps) = init.get("capabilities").and_then(|c| c.as_object()) {
            for (k, v) in caps {
                capabilities.insert(k.clone(), v.clone());
            }
        }
        if names.len() == 1 {
            server_info = init.get("serverInfo").cloned().unwrap_or(server_info);
            instructions = init.get("instructions").cloned();
        }
    }
    // Children live for one request: no list-changed notifications can be delivered.
    for cap in capabilities.values_mut() {
        if let Some(obj) = cap.as_object_mut()
            && obj.contains_key("listChanged")
        {
            obj.insert("listChanged".into(), serde_json::Value::Bool(false));
        }
    }
    let session = match create_session(state, &creds, client, Some(version.to_string())).await {
        Ok(s) => s,
        Err(e) => return rpc_error(e.status, id, GATEWAY_ERROR, &e.message),
    };
    let mut result = serde_json::json!({
        "protocolVersion": version,
        "capabilities": capabilities,
        "serverInfo": server_info,
    });
    if let Some(text) = instructions {
        result["instructions"] = text;
    }
    let mut response = json(StatusCode::OK, jsonrpc::response(id, &result.to_string()));
    if let Ok(value) = HeaderValue::from_str(session.as_str()) {
        response.headers_mut().insert(SESSION_HEADER, value);
    }
    response
}

async fn notification(state: &AppState, session: &SessionId, message: &Envelope<'_>) -> Response {
    if message.method.as_deref() == Some("notifications/cancelled")
        && let Some(request_id) = message
            .params
            .and_then(|p| serde_json::from_str::<serde_json::Value>(p.get()).ok())
            .and_then(|p| p.get("requestId").map(|r| r.to_string()))
    {
        let payload = serde_json::json!({"session": session.as_str(), "request": request_id}).to_string();
        if state.inflight.cancel(session.as_str(), &request_id) {
            // Ours: done.
        } else if let Err(e) = state.store.publish(&state.keys.channel("cancel"), &payload).await {
            tracing::warn!(error = %e, "could not route a cancellation");
        }
    }
    StatusCode::ACCEPTED.into_response()
}

async fn response(state: &AppState, session: &SessionId, message: &Envelope<'_>) -> Response {
    let Some(id) = message.id.and_then(|i| serde_json::from_str::<String>(i.get()).ok()) else {
        return StatusCode::ACCEPTED.into_response();
    };
    let result = message.result.map(RawValue::get);
    let error = message.error.map(RawValue::get);
    match ReplyRouter::worker_of(&id) {
        Some(worker) if worker == state.relay.worker_id() => {
            let delivery = state.relay.deliver(session.as_str(), &id, result, error);
            tracing::debug!(?delivery, "answer to a server request");
        }
        Some(worker) => {
            let payload = serde_json::json!({
                "session": session.as_str(),
                "id": id,
                "result": result.and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok()),
                "error": error.and_then(|e| serde_json::from_str::<serde_json::Value>(e).ok()),
            });
            let channel = state.keys.channel(&format!("worker:{worker}"));
            if let Err(e) = state.store.publish(&channel, &payload.to_string()).await {
                return super::ApiError::from(e).into_response();
            }
        }
        None => {}
    }
    StatusCode::ACCEPTED.into_response()
}

/// Handles a message published to this worker: a routed answer, a cancellation, or a
/// session that ended (its warm children go).
pub fn on_published(state: &AppState, channel: &str, payload: &str) {
    if channel.ends_with("channel:forget") {
        state.manager.forget_tag(payload);
        return;
    }
    let Ok(message) = serde_json::from_str::<serde_json::Value>(payload) else { return };
    let session = message.get("session").and_then(|s| s.as_str()).unwrap_or("");
    if channel.ends_with("channel:cancel") {
        if let Some(request) = message.get("request").and_then(|r| r.as_str()) {
            state.inflight.cancel(session, request);
        }
        return;
    }
    let Some(id) = message.get("id").and_then(|i| i.as_str()) else { return };
    let result = message.get("result").filter(|r| !r.is_null()).map(|r| r.to_string());
    let error = message.get("error").filter(|e| !e.is_null()).map(|e| e.to_string());
    state.relay.deliver(session, id, result.as_deref(), error.as_deref());
}

/// Requests in flight on this worker, by session and client request id, for cancellation.
#[derive(Default)]
pub struct Inflight(std::sync::Mutex<std::collections::HashMap<(String, String), CancellationToken>>);

impl Inflight {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<(String, String), CancellationToken>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn register(&self, session: &str, request: &str) -> CancellationToken {
        let token = CancellationToken::new();
        self.lock().insert((session.to_string(), request.to_string()), token.clone());
        token
    }

    fn remove(&self, session: &str, request: &str) {
        self.lock().remove(&(session.to_string(), request.to_string()));
    }

    /// Cancels a request if it runs here; true if it did.
    fn cancel(&self, session: &str, request: &str) -> bool {
        match self.lock().remove(&(session.to_string(), request.to_string())) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }
}

/// Aborts the call when the response (or its stream) is dropped: the client went away.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

enum Finished {
    /// The raw result, or why there is none.
    Done(Result<String, CallFailure>),
    Cancelled,
}

/// What a request becomes upstream.
enum Operation {
    /// `tools/list`: the merged catalogue (cached; no spawn on a hit).
    ListTools,
    /// `tools/call`: routed, through the result cache.
    CallTool { server: String, tool: String, arguments: serde_json::Value, params: Box<RawValue> },
    /// Anything else: forwarded untouched to the (first) server.
    Forward { server: String, method: String, params: Option<Box<RawValue>> },
}

/// Decides what a request becomes; `Err` is a JSON-RPC error line for the client.
fn operation(
    state: &AppState,
    id: &str,
    method: &str,
    params: Option<&RawValue>,
) -> Result<Operation, String> {
    let invalid = |m: &str| jsonrpc::error_response(id, code::INVALID_PARAMS, m);
    match method {
        "tools/list" => Ok(Operation::ListTools),
        "tools/call" => {
            let parsed: serde_json::Value = params
                .and_then(|p| serde_json::from_str(p.get()).ok())
                .ok_or_else(|| invalid("tools/call needs params"))?;
            let name = parsed
                .get("name")
                .and_then(|n| n.as_str())
                .ok_or_else(|| invalid("tools/call needs a name"))?;
            let (server, tool) = super::routes::route_tool(state, name).map_err(|e| invalid(&e.message))?;
            let arguments = parsed.get("arguments").cloned().unwrap_or_else(|| serde_json::json!({}));
            let params = if tool == name {
                // One server: the params go through byte for byte.
                params.map(RawValue::to_owned).ok_or_else(|| invalid("tools/call needs params"))?
            } else {
                let mut renamed = parsed.clone();
                renamed["name"] = serde_json::Value::String(tool.to_string());
                RawValue::from_string(renamed.to_string()).map_err(|e| invalid(&e.to_string()))?
            };
            Ok(Operation::CallTool { server: server.to_string(), tool: tool.to_string(), arguments, params })
        }
        _ => {
            let server = state.manager.server_names().first().map(|s| s.to_string()).unwrap_or_default();
            Ok(Operation::Forward {
                server,
                method: method.to_string(),
                params: params.map(RawValue::to_owned),
            })
        }
    }
}

async fn perform(
    state: &AppState,
    session: &SessionId,
    creds: &serde_json::Value,
    client: Client<'_>,
    operation: Operation,
    relay: Option<&Relay>,
) -> Result<String, CallFailure> {
    match operation {
        Operation::ListTools => {
            let tools = super::calls::all_tools(state, creds, client.capabilities).await?;
            Ok(serde_json::json!({ "tools": tools }).to_string())
        }
        Operation::CallTool { server, tool, arguments, params } => {
            let call = ToolCall {
                server: &server,
                tool: &tool,
                arguments: &arguments,
                params: &params,
                use_cache: true,
                route: "/mcp",
            };
            Ok(super::calls::call_tool(state, session, &call, client, relay).await?.0)
        }
        Operation::Forward { server, method, params } => {
            let outcome = state
                .manager
                .call_with(crate::upstream::Call {
                    server: &server,
                    credentials: creds,
                    client,
                    method: &method,
                    params: params.as_deref(),
                    relay,
                    session: Some(session.as_str()),
                    list_tools: false,
                })
                .await?;
            Ok(outcome.result.get().to_string())
        }
    }
}

/// `logging/setLevel`: kept in the session, so every child spawned for it gets the level.
async fn set_log_level(
    state: &AppState,
    session: &SessionId,
    id: &str,
    params: Option<&RawValue>,
) -> Response {
    const LEVELS: [&str; 8] =
        ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];
    let level = params
        .and_then(|p| serde_json::from_str::<serde_json::Value>(p.get()).ok())
        .and_then(|p| p.get("level").and_then(|l| l.as_str()).map(String::from));
    let Some(level) = level.filter(|l| LEVELS.contains(&l.as_str())) else {
        let line =
            jsonrpc::error_response(id, code::INVALID_PARAMS, "level must be one of the syslog levels");
        return json(StatusCode::OK, line);
    };
    match state
        .store
        .set_field(session, "log_level", &level, crate::session::now_ms(), state.config.idle_ttl())
        .await
    {
        Ok(true) => json(StatusCode::OK, jsonrpc::response(id, "{}")),
        Ok(false) => rpc_error(StatusCode::NOT_FOUND, id, GATEWAY_ERROR, "Session not found"),
        Err(e) => super::ApiError::from(e).into_response(),
    }
}

/// The client's capabilities recorded at `initialize`, raw.
fn client_capabilities(record: &SessionRecord) -> Option<Box<RawValue>> {
    let caps = record.client.get("capabilities")?;
    RawValue::from_string(caps.to_string()).ok()
}

async fn request(
    state: AppState,
    session: SessionId,
    record: &SessionRecord,
    creds: serde_json::Value,
    message: &Envelope<'_>,
) -> Response {
    let id = message.id.map_or("null", RawValue::get).to_string();
    let method = message.method.as_deref().unwrap_or_default().to_string();
    if method == "ping" {
        return json(StatusCode::OK, jsonrpc::response(&id, "{}"));
    }
    let operation = match operation(&state, &id, &method, message.params) {
        Ok(op) => op,
        Err(line) => return json(StatusCode::OK, line),
    };
    if method == "logging/setLevel" {
        return set_log_level(&state, &session, &id, message.params).await;
    }
    let capabilities = client_capabilities(record);
    let log_level = record.log_level.clone();
    let (events_tx, mut events) = mpsc::channel::<ServerMessage>(64);
    let (done_tx, mut done) = oneshot::channel::<Finished>();
    let cancel = state.inflight.register(session.as_str(), &id);
    let task = {
        let state = state.clone();
        let session_key = session.as_str().to_string();
        let request_id = id.clone();
        let session = session.clone();
        tokio::spawn(async move {
            let relay =
                Relay { session: session_key.clone(), events: events_tx, router: state.relay.clone() };
            let client = Client { capabilities: capabilities.as_deref(), log_level: log_level.as_deref() };
            let call = perform(&state, &session, &creds, client, operation, Some(&relay));
            let finished = tokio::select! {
                outcome = call => Finished::Done(outcome),
                () = cancel.cancelled() => Finished::Cancelled,
            };
            state.inflight.remove(&session_key, &request_id);
            let _ = done_tx.send(finished);
        })
    };
    let guard = AbortOnDrop(task);
    // Whatever comes first decides: the answer alone is plain JSON; anything before it means SSE.
    let first = tokio::select! {
        biased;
        Some(event) = events.recv() => Some(event),
        finished = &mut done => {
            drop(guard);
            return match finished {
                Ok(Finished::Done(Err(CallFailure::Upstream(UpstreamError::Saturated)))) => {
                    let mut r = rpc_error(StatusCode::SERVICE_UNAVAILABLE, &id, GATEWAY_ERROR, "worker saturated; retry");
                    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1));
                    r
                }
                Ok(Finished::Done(outcome)) => json(StatusCode::OK, final_line(&id, outcome)),
                // Cancelled: the client does not expect an answer.
                Ok(Finished::Cancelled) | Err(_) => StatusCode::ACCEPTED.into_response(),
            };
        }
    };
    let stream = stream::unfold(
        (first, events, Some(done), guard, id),
        |(pending, mut events, done, guard, id)| async move {
            if let Some(message) = pending {
                return Some((Ok::<_, Infallible>(sse_event(message)), (None, events, done, guard, id)));
            }
            let mut done = done?;
            tokio::select! {
                biased;
                Some(message) = events.recv() => Some((Ok(sse_event(message)), (None, events, Some(done), guard, id))),
                finished = &mut done => match finished {
                    Ok(Finished::Done(outcome)) => {
                        let line = final_line(&id, outcome);
                        Some((Ok(Event::default().data(line)), (None, events, None, guard, id)))
                    }
                    _ => None,
                },
            }
        },
    );
    let mut response = Sse::new(stream).keep_alive(KeepAlive::default()).into_response();
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

fn sse_event(message: ServerMessage) -> Event {
    match message {
        ServerMessage::Notification(line) | ServerMessage::Request(line) => Event::default().data(line),
    }
}

/// The JSON-RPC answer to the client for a finished call.
fn final_line(id: &str, outcome: Result<String, CallFailure>) -> String {
    match outcome {
        Ok(result) => jsonrpc::response(id, &result),
        Err(CallFailure::Upstream(UpstreamError::Rpc(error))) => {
            format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{}}}"#, error.get())
        }
        Err(CallFailure::Upstream(e)) => jsonrpc::error_response(id, GATEWAY_ERROR, &e.to_string()),
        Err(CallFailure::Api(e)) => {
            let code = if e.status == StatusCode::NOT_FOUND || e.status == StatusCode::FORBIDDEN {
                code::INVALID_PARAMS
            } else {
                GATEWAY_ERROR
            };
            jsonrpc::error_response(id, code, &e.message)
        }
    }
}

/// A JSON-RPC batch: only for sessions that negotiated 2025-03-26; answered as one JSON array.
async fn batch(state: &AppState, headers: &HeaderMap, text: &str) -> Response {
    let (id, record, creds) = match session_of(state, headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if record.protocol_version.as_deref() != Some("2025-03-26") {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            "null",
            code::INVALID_REQUEST,
            "Invalid Request: batches are only allowed for protocol version 2025-03-26",
        );
    }
    let Ok(items) = serde_json::from_str::<Vec<Box<RawValue>>>(text) else {
        return rpc_error(StatusCode::BAD_REQUEST, "null", code::PARSE_ERROR, "Parse error");
    };
    let mut answers = Vec::new();
    for item in &items {
        let Ok(message) = Envelope::parse(item.get()) else { continue };
        if message.kind() != Kind::Request {
            continue;
        }
        let rid = message.id.map_or("null", RawValue::get).to_string();
        let method = message.method.as_deref().unwrap_or_default();
        let line = if method == "ping" {
            jsonrpc::response(&rid, "{}")
        } else {
            match operation(state, &rid, method, message.params) {
                Ok(op) => {
                    let caps = client_capabilities(&record);
                    let client =
                        Client { capabilities: caps.as_deref(), log_level: record.log_level.as_deref() };
                    final_line(&rid, perform(state, &id, &creds, client, op, None).await)
                }
                Err(line) => line,
            }
        };
        answers.push(line);
    }
    if answers.is_empty() {
        return StatusCode::ACCEPTED.into_response();
    }
    json(StatusCode::OK, format!("[{}]", answers.join(",")))
}

/// A session ended (deleted here): its warm children go on this worker now and on every
/// other worker through the store's pub/sub (the tag is a hash, never the session id).
pub(super) async fn forget_everywhere(state: &AppState, id: &SessionId) {
    state.manager.forget_session(id.as_str());
    let tag = crate::upstream::McpManager::session_tag(id.as_str());
    if let Err(e) = state.store.publish(&state.keys.channel("forget"), &tag).await {
        tracing::warn!(error = %e, "could not tell the other workers that a session ended");
    }
}

/// Routes published answers, cancellations and ended sessions to this worker.
pub fn spawn_dispatcher(state: AppState) {
    let (tx, mut rx) = mpsc::channel::<(String, String)>(1024);
    let channels = vec![
        state.keys.channel(&format!("worker:{}", state.relay.worker_id())),
        state.keys.channel("cancel"),
        state.keys.channel("forget"),
    ];
    state.store.subscribe(channels, tx);
    tokio::spawn(async move {
        while let Some((channel, payload)) = rx.recv().await {
            on_published(&state, &channel, &payload);
        }
    });
}
