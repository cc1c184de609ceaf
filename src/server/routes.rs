//! The legacy HTTP API of the design document: `/init`, `/call-tool`, `/tools`, `/session`.
//!
//! A thin adapter: each handler parses the request (headers and a bounded JSON body),
//! calls the gateway, and renders the answer; every failure is a
//! [`GatewayError`](crate::gateway::GatewayError) rendered by `error.rs`. A request may
//! present its session's token with `Authorization: Bearer`, as on `/mcp`; who may use a
//! session without one is the gateway's rule (`gateway/sessions.rs`).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::json;
use super::{AppState, bearer_token, body};
use crate::gateway::{Bound, Door, Gateway, GatewayError, Presented, ToolCall};
use crate::protocol::SESSION_HEADER;
use crate::protocol::jsonrpc::json_string;
use crate::session::SessionId;
use crate::upstream::Client;

type Answer = Result<Response, GatewayError>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InitRequest {
    /// Absent is `null`: the credentials check answers 401 `missing_credentials`.
    #[serde(default)]
    credentials: serde_json::Value,
    #[serde(default)]
    client: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallToolRequest {
    #[serde(default)]
    session_id: Option<String>,
    tool: String,
    #[serde(default)]
    arguments: Option<Box<RawValue>>,
    /// `false` bypasses the result cache.
    #[serde(default)]
    cache: Option<bool>,
}

/// The session id from the `Mcp-Session-Id` header, else from the body's `session_id`.
fn session_id(headers: &HeaderMap, from_body: Option<&str>) -> Result<SessionId, GatewayError> {
    let raw = match headers.get(SESSION_HEADER) {
        Some(value) => value.to_str().map_err(|_| GatewayError::SessionNotFound)?,
        None => from_body.ok_or(GatewayError::MissingSessionId)?,
    };
    Gateway::parse_session_id(raw)
}

/// The session of a request, if the token it presents (or none) may use it; with the cache
/// entry at `field` read in the same store round trip.
async fn bind(
    state: &AppState,
    headers: &HeaderMap,
    id: SessionId,
    field: Option<String>,
) -> Result<Bound, GatewayError> {
    let presented = Presented { token: bearer_token(headers), door: Door::Legacy };
    state.bind_session(id, presented, field).await
}

pub(super) async fn init(State(state): State<AppState>, headers: HeaderMap, request: Body) -> Answer {
    let mut request: InitRequest = body::parse(request, state.config.max_body_bytes).await?;
    if state.auth.is_oauth()
        && let Some(token) = bearer_token(&headers)
    {
        // Auth mode `oauth`: the access token comes in the header; the body may add
        // credentials for the servers (never stored with the token).
        let mut credentials = request.credentials.as_object().cloned().unwrap_or_default();
        credentials.insert("token".into(), serde_json::Value::String(token.to_string()));
        request.credentials = serde_json::Value::Object(credentials);
    }
    let client = request.client.unwrap_or(serde_json::Value::Null);
    let id = state.create_session(&request.credentials, client, None).await?;
    let body = serde_json::json!({ "session_id": id.as_str(), "idle_ttl_secs": state.config.idle_ttl_secs });
    let mut response = json(StatusCode::OK, body.to_string());
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        response.headers_mut().insert(SESSION_HEADER, value);
    }
    Ok(response)
}

pub(super) async fn call_tool(State(state): State<AppState>, headers: HeaderMap, request: Body) -> Answer {
    let bad = |m: String| GatewayError::BadRequest(m);
    let request: CallToolRequest = body::parse(request, state.config.max_body_bytes).await?;
    if request.tool.is_empty() {
        return Err(bad("`tool` must be a non-empty string".into()));
    }
    let arguments = request.arguments.as_deref().map_or("{}", RawValue::get);
    if !arguments.trim_start().starts_with('{') {
        return Err(bad("`arguments` must be a JSON object".into()));
    }
    let id = session_id(&headers, request.session_id.as_deref())?;
    let (server, tool) = state.route_tool(&request.tool)?;
    let arguments_value: serde_json::Value =
        serde_json::from_str(arguments).map_err(|e| bad(format!("`arguments`: {e}")))?;
    let params = format!(r#"{{"name":{},"arguments":{arguments}}}"#, json_string(tool));
    let params = RawValue::from_string(params).map_err(|e| bad(e.to_string()))?;
    let call = ToolCall {
        server,
        tool,
        arguments: &arguments_value,
        params: &params,
        use_cache: request.cache != Some(false),
        route: "/call-tool",
    };
    let session = bind(&state, &headers, id, state.call_slot(&call)).await?;
    let (result, cached) = state.call_tool_bound(&session, &call, Client::default(), None).await?;
    Ok(json(StatusCode::OK, format!(r#"{{"result":{result},"cached":{cached}}}"#)))
}

pub(super) async fn tools(State(state): State<AppState>, headers: HeaderMap) -> Answer {
    let session = bind(&state, &headers, session_id(&headers, None)?, None).await?;
    let tools = state.all_tools(&session.credentials, None).await?;
    Ok(json(StatusCode::OK, serde_json::json!({ "tools": tools }).to_string()))
}

pub(super) async fn get_session(State(state): State<AppState>, headers: HeaderMap) -> Answer {
    let session = bind(&state, &headers, session_id(&headers, None)?, None).await?;
    Ok(json(StatusCode::OK, state.view(&session.id, &session.record).to_json()))
}

pub(super) async fn patch_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Body,
) -> Answer {
    let patch: serde_json::Value = body::parse(request, state.config.max_body_bytes).await?;
    let serde_json::Value::Object(patch) = patch else {
        return Err(GatewayError::BadRequest(
            "the body must be a JSON merge patch object for `state`".into(),
        ));
    };
    let id = bind(&state, &headers, session_id(&headers, None)?, None).await?.id;
    let record = state.patch_state(&id, patch).await?;
    Ok(json(StatusCode::OK, state.view(&id, &record).to_json()))
}

pub(super) async fn delete_session(State(state): State<AppState>, headers: HeaderMap) -> Answer {
    let id = bind(&state, &headers, session_id(&headers, None)?, None).await?.id;
    state.delete_session(&id).await?;
    Ok(json(StatusCode::OK, r#"{"deleted":true}"#.into()))
}
