//! The legacy HTTP API of the design document: `/init`, `/call-tool`, `/tools`, `/session`.
//!
//! Handlers parse the body themselves so every rejection is a JSON error with a
//! clear message (a 413 for an over-limit body, a 400 naming the bad field).

use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures_util::StreamExt;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::{ApiError, AppState};
use crate::protocol::jsonrpc::json_string;
use crate::session::{SCHEMA_VERSION, SessionId, SessionRecord, merge_patch, now_ms};
use crate::store::CasOutcome;
use crate::upstream::Client;

/// Header carrying the session id on every route.
pub const SESSION_HEADER: &str = "mcp-session-id";

/// Most attempts of a state compare-and-set before giving up with 503.
const MAX_CAS_ATTEMPTS: usize = 200;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InitRequest {
    credentials: serde_json::Value,
    #[serde(default)]
    client: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CallToolRequest {
    #[serde(default)]
    session_id: Option<String>,
    tool: String,
    #[serde(default)]
    arguments: Option<Box<RawValue>>,
    /// `false` bypasses the result cache.
    #[serde(default)]
    cache: Option<bool>,
}

/// Most bytes of an over-limit body read and discarded so the client gets its 413
/// (a server that stops reading mid-body makes many clients see a reset instead).
const MAX_DISCARD_BYTES: usize = 64 * 1024 * 1024;

/// Reads a body of at most `max_body_bytes`. Over the limit: the rest is drained
/// (bounded) and the answer is 413.
pub(super) async fn read_body(state: &AppState, body: Body) -> Result<Bytes, ApiError> {
    let limit = state.config.max_body_bytes;
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
        seen = seen.saturating_add(chunk.len());
        if seen > limit {
            if seen > MAX_DISCARD_BYTES {
                break;
            }
            continue;
        }
        buf.extend_from_slice(&chunk);
    }
    if seen > limit {
        return Err(ApiError::too_large(limit));
    }
    Ok(buf.freeze())
}

/// Reads and parses a JSON body, mapping every failure to a JSON error.
pub(super) async fn parse_body<T: DeserializeOwned>(state: &AppState, body: Body) -> Result<T, ApiError> {
    let bytes = read_body(state, body).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty; a JSON object is expected"));
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The session id from the `Mcp-Session-Id` header, else from the body's `session_id`.
fn session_id(headers: &HeaderMap, from_body: Option<&str>) -> Result<SessionId, ApiError> {
    let raw = match headers.get(SESSION_HEADER) {
        Some(value) => value.to_str().map_err(|_| ApiError::session_not_found())?,
        None => from_body.ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "missing_session_id",
                "send the session id in the Mcp-Session-Id header (POST /init creates one)",
            )
        })?,
    };
    SessionId::parse(raw.trim()).ok_or_else(ApiError::session_not_found)
}

/// Loads a session, resetting its idle TTL; 404 if there is none.
pub(super) async fn load_session(state: &AppState, id: &SessionId) -> Result<SessionRecord, ApiError> {
    match state.store.load(id, now_ms(), state.config.idle_ttl()).await {
        Ok(Some(record)) => Ok(record),
        Ok(None) => {
            state.metrics.session("not_found");
            Err(ApiError::session_not_found())
        }
        Err(e) => {
            state.metrics.store_error();
            Err(e.into())
        }
    }
}

/// Creates a session for verified credentials and returns its id.
pub(super) async fn create_session(
    state: &AppState,
    credentials: &serde_json::Value,
    client: serde_json::Value,
    protocol_version: Option<String>,
) -> Result<SessionId, ApiError> {
    let verified = state.auth.verify(credentials).await?;
    let id = SessionId::generate().map_err(|_| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "rng_unavailable", "the OS random source failed")
    })?;
    let sealed = state
        .sealer
        .seal(credentials.to_string().as_bytes(), id.as_str())
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "seal_failed", e.to_string()))?;
    let now = now_ms();
    let record = SessionRecord {
        schema: SCHEMA_VERSION,
        created_ms: now,
        last_seen_ms: now,
        principal: verified.principal,
        identity: verified.identity,
        client,
        protocol_version,
        sealed_credentials: sealed,
        state: serde_json::Value::Object(serde_json::Map::new()),
        state_rev: 0,
        log_level: None,
    };
    state.store.create(&id, &record, state.config.idle_ttl()).await.map_err(|e| {
        state.metrics.store_error();
        ApiError::from(e)
    })?;
    state.metrics.session("created");
    tracing::debug!(session = ?id, principal = %record.principal, "session created");
    Ok(id)
}

/// The session's credentials, opened.
pub(super) fn credentials(
    state: &AppState,
    id: &SessionId,
    record: &SessionRecord,
) -> Result<serde_json::Value, ApiError> {
    let plain = state.sealer.open(&record.sealed_credentials, id.as_str()).map_err(|e| {
        tracing::error!(session = ?id, error = %e, "cannot open sealed credentials");
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "credentials_unreadable",
            "this session's credentials cannot be opened by this worker (secret key mismatch); initialize a new session",
        )
    })?;
    serde_json::from_slice(&plain).map_err(|_| {
        ApiError::new(StatusCode::UNAUTHORIZED, "credentials_unreadable", "stored credentials are unreadable")
    })
}

/// Which server a tool belongs to, and its name there. With one server, names are
/// as the server gives them; with several, they are `server.tool`.
pub(super) fn route_tool<'a>(state: &'a AppState, tool: &'a str) -> Result<(&'a str, &'a str), ApiError> {
    let names = state.manager.server_names();
    if let [only] = names.as_slice() {
        return Ok((only, tool));
    }
    tool.split_once('.').filter(|(server, _)| names.contains(server)).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_tool",
            format!("no server offers a tool named `{tool}`"),
        )
    })
}

pub(super) async fn init(State(state): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let request: InitRequest = parse_body(&state, body).await?;
    let client = request.client.unwrap_or(serde_json::Value::Null);
    let id = create_session(&state, &request.credentials, client, None).await?;
    let body = serde_json::json!({ "session_id": id.as_str(), "idle_ttl_secs": state.config.idle_ttl_secs })
        .to_string();
    let mut response = json_response(StatusCode::OK, body);
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        response.headers_mut().insert(SESSION_HEADER, value);
    }
    Ok(response)
}

pub(super) async fn call_tool(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let request: CallToolRequest = parse_body(&state, body).await?;
    if request.tool.is_empty() {
        return Err(ApiError::bad_request("`tool` must be a non-empty string"));
    }
    let arguments = request.arguments.as_deref().map_or("{}", RawValue::get);
    if !arguments.trim_start().starts_with('{') {
        return Err(ApiError::bad_request("`arguments` must be a JSON object"));
    }
    let id = session_id(&headers, request.session_id.as_deref())?;
    let (server, tool) = route_tool(&state, &request.tool)?;
    let arguments_value: serde_json::Value =
        serde_json::from_str(arguments).map_err(|e| ApiError::bad_request(format!("`arguments`: {e}")))?;
    let params = format!(r#"{{"name":{},"arguments":{arguments}}}"#, json_string(tool));
    let params = RawValue::from_string(params).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let call = super::calls::ToolCall {
        server,
        tool,
        arguments: &arguments_value,
        params: &params,
        use_cache: request.cache != Some(false),
        route: "/call-tool",
    };
    let (result, cached) = super::calls::call_tool(&state, &id, &call, Client::default(), None).await?;
    let body = format!(r#"{{"result":{result},"cached":{cached}}}"#);
    Ok(json_response(StatusCode::OK, body))
}

pub(super) async fn tools(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let id = session_id(&headers, None)?;
    let record = load_session(&state, &id).await?;
    let credentials = credentials(&state, &id, &record)?;
    let tools = super::calls::all_tools(&state, &credentials, None).await?;
    Ok(json_response(StatusCode::OK, serde_json::json!({ "tools": tools }).to_string()))
}

fn rfc3339(ms: u64) -> String {
    let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(time).to_string()
}

fn session_view(state: &AppState, id: &SessionId, record: &SessionRecord) -> String {
    serde_json::json!({
        "session_id": id.as_str(),
        "created_at": rfc3339(record.created_ms),
        "last_seen": rfc3339(record.last_seen_ms),
        "idle_ttl_secs": state.config.idle_ttl_secs,
        "principal": record.principal,
        "client": record.client,
        "protocol_version": record.protocol_version,
        "state": record.state,
    })
    .to_string()
}

pub(super) async fn get_session(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = session_id(&headers, None)?;
    let record = load_session(&state, &id).await?;
    Ok(json_response(StatusCode::OK, session_view(&state, &id, &record)))
}

pub(super) async fn patch_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let patch: serde_json::Value = parse_body(&state, body).await?;
    if !patch.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON merge patch object for `state`"));
    }
    let id = session_id(&headers, None)?;
    for attempt in 0..MAX_CAS_ATTEMPTS {
        let mut record = load_session(&state, &id).await?;
        merge_patch(&mut record.state, &patch);
        let text = record.state.to_string();
        if text.len() > state.config.max_state_bytes {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "state_too_large",
                format!("the session state would exceed {} bytes", state.config.max_state_bytes),
            ));
        }
        let outcome = state
            .store
            .replace_state(&id, record.state_rev, &text, now_ms(), state.config.idle_ttl())
            .await
            .map_err(ApiError::from)?;
        match outcome {
            CasOutcome::Applied => {
                record.state_rev += 1;
                return Ok(json_response(StatusCode::OK, session_view(&state, &id, &record)));
            }
            CasOutcome::Missing => return Err(ApiError::session_not_found()),
            CasOutcome::Conflict => {
                if attempt >= 3 {
                    // Spread contending writers apart a little.
                    let jitter = u64::from(
                        SystemTime::now()
                            .duration_since(SystemTime::UNIX_EPOCH)
                            .map_or(0, |d| d.subsec_nanos())
                            % 3000,
                    );
                    tokio::time::sleep(std::time::Duration::from_micros(jitter)).await;
                }
            }
        }
    }
    Err(ApiError {
        retry_after: Some(1),
        ..ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "contention",
            "too many concurrent writers to this session; retry",
        )
    })
}

pub(super) async fn delete_session(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = session_id(&headers, None)?;
    if state.store.delete(&id).await.map_err(ApiError::from)? {
        super::mcp::forget_everywhere(&state, &id).await;
        state.metrics.session("deleted");
        Ok(json_response(StatusCode::OK, r#"{"deleted":true}"#.into()))
    } else {
        Err(ApiError::session_not_found())
    }
}
