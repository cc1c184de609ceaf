//! MCP Streamable HTTP at `/mcp`, modern era (2026-07-28): the adapter.
//!
//! A request opens the modern era when its `MCP-Protocol-Version` header or its
//! `params._meta` names a modern revision, or its `_meta` carries a protocol version at
//! all (so an unsupported one gets `-32022`, not a legacy answer); a legacy `initialize`
//! (with `params.protocolVersion`) never does. Such a request is served statelessly:
//!
//! * the transport checks of the era: `_meta` (`-32602`), `MCP-Protocol-Version` equal to
//!   `_meta` (`-32020`) and supported (`-32022`, `data.supported`/`data.requested`),
//!   `Mcp-Method`/`Mcp-Name` mirroring the body and `Mcp-Param-*` mirroring the arguments
//!   a tool's schema marks `x-mcp-header` (`-32020`), each with HTTP 400 and the request id;
//! * methods removed from the era and unknown ones: 404 with `-32601`;
//! * `server/discover`; `subscriptions/listen` (acknowledged, honouring no notification
//!   type, since every child lives for one request; bounded in number and lifetime);
//! * everything else through the gateway for the principal record (see
//!   `gateway/modern.rs`), with `resultType` on every result and cache hints on lists
//!   and reads. What the child sends before its response streams as SSE (notifications
//!   only; logs only when `_meta` asks for a level); its requests become an
//!   `InputRequiredResult`. Closing the stream cancels the call.
//!
//! **Invariant:** payloads are forwarded as raw JSON; results gain only `resultType`
//! (and cache hints) at the top level.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, stream};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::error::{json as json_response, rpc_answer, rpc_error_line, rpc_rejection};
use super::{AppState, bearer_token};
use crate::gateway::{Gateway, GatewayError, InputRequest, Operation, RunningCall, Step};
use crate::protocol::jsonrpc::{self, Envelope, Kind, code};
use crate::protocol::modern::{self, Era};
use crate::protocol::{SESSION_HEADER, SUPPORTED_VERSIONS, VERSION_HEADER, capabilities_problem};
use crate::session::SessionId;
use crate::upstream::UpstreamError;

/// Most `subscriptions/listen` streams open on one worker at once.
const MAX_LISTENERS: usize = 256;

/// Longest a `subscriptions/listen` stream stays open; then it is closed gracefully (its
/// result), and the client opens another.
const LISTEN_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// The methods served through the gateway in the modern era.
const SERVED: &[&str] = &[
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "completion/complete",
];

/// Results that carry cache hints (`ttlMs`, `cacheScope`).
const CACHEABLE: &[&str] =
    &["tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read"];

/// Whether a request on `/mcp` opens the modern era (see the module doc). `params_raw` is
/// parsed only when the header or the raw text hints at a modern request.
pub(super) fn opens_modern(headers: &HeaderMap, method: Option<&str>, params_raw: Option<&RawValue>) -> bool {
    let header = headers.get(VERSION_HEADER).and_then(|v| v.to_str().ok());
    let hinted = header.is_some_and(modern::is_modern_version)
        || params_raw.is_some_and(|p| p.get().contains(modern::META_PROTOCOL_VERSION));
    if !hinted {
        return false;
    }
    let params: Option<Value> = params_raw.and_then(|p| serde_json::from_str(p.get()).ok());
    let params = params.as_ref();
    let meta_version = params.and_then(|p| p.get("_meta")).and_then(|m| m.get(modern::META_PROTOCOL_VERSION));
    if method == Some("initialize") {
        // A legacy `initialize` names its version in `params.protocolVersion`.
        let legacy = params.and_then(|p| p.get("protocolVersion")).is_some();
        return !legacy;
    }
    if headers.contains_key(SESSION_HEADER) && meta_version.is_none() {
        return false;
    }
    meta_version.is_some() || modern::era_of(header, method, params) == Era::Modern
}

/// What a modern request's `_meta` declares.
struct Meta {
    capabilities: Value,
    client_info: Option<Value>,
    log_level: Option<String>,
}

/// A refusal of the modern transport: status, code, message, data.
struct Refusal(StatusCode, i64, String, Option<Value>);

impl Refusal {
    fn mismatch(message: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, modern::code::HEADER_MISMATCH, message.into(), None)
    }

    fn respond(self, id: &str) -> Response {
        let Self(status, code, message, data) = self;
        let mut error = json!({"code": code, "message": message});
        if let Some(data) = data {
            error["data"] = data;
        }
        json_response(status, format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{error}}}"#))
    }
}

fn not_found(method: &str) -> Refusal {
    Refusal(StatusCode::NOT_FOUND, code::METHOD_NOT_FOUND, format!("Method not found: {method}"), None)
}

/// A mirrored header's value, decoded (`None`: absent; `Some(None)`: malformed).
fn mirrored(headers: &HeaderMap, name: &str) -> Option<Option<String>> {
    let value = headers.get(name)?;
    Some(value.to_str().ok().and_then(modern::decode_header_value))
}

/// The checks of the era's transport, in the order the specification gives them.
fn validate(headers: &HeaderMap, method: &str, params: Option<&Value>) -> Result<Meta, Refusal> {
    let meta = params.and_then(|p| p.get("_meta")).and_then(Value::as_object);
    let version = meta.and_then(|m| m.get(modern::META_PROTOCOL_VERSION)).and_then(Value::as_str);
    let capabilities = meta.and_then(|m| m.get(modern::META_CLIENT_CAPABILITIES)).filter(|c| c.is_object());
    let (Some(version), Some(capabilities)) = (version, capabilities) else {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            code::INVALID_PARAMS,
            format!(
                "Invalid params: params._meta must carry {} and {}",
                modern::META_PROTOCOL_VERSION,
                modern::META_CLIENT_CAPABILITIES
            ),
            None,
        ));
    };
    let header = headers.get(VERSION_HEADER).and_then(|v| v.to_str().ok()).map(str::trim);
    if header != Some(version) {
        return Err(Refusal::mismatch(format!(
            "Header mismatch: MCP-Protocol-Version ({}) must equal params._meta[\"{}\"] ({version})",
            header.unwrap_or("absent"),
            modern::META_PROTOCOL_VERSION
        )));
    }
    if !modern::VERSIONS.contains(&version) {
        let mut supported: Vec<&str> = modern::VERSIONS.to_vec();
        supported.extend_from_slice(SUPPORTED_VERSIONS);
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            modern::code::UNSUPPORTED_PROTOCOL_VERSION,
            format!("Unsupported protocol version: {version}"),
            Some(json!({"supported": supported, "requested": version})),
        ));
    }
    match mirrored(headers, modern::METHOD_HEADER) {
        Some(Some(m)) if m == method => {}
        Some(_) => return Err(Refusal::mismatch(format!("Header mismatch: Mcp-Method must be `{method}`"))),
        None => return Err(Refusal::mismatch("Header mismatch: the Mcp-Method header is required")),
    }
    if let Some(name) = modern::name_of(method, params) {
        match mirrored(headers, modern::NAME_HEADER) {
            Some(Some(n)) if n == name => {}
            Some(_) => {
                return Err(Refusal::mismatch("Header mismatch: Mcp-Name must equal the body's name or uri"));
            }
            None => {
                return Err(Refusal::mismatch(format!(
                    "Header mismatch: {method} requires the Mcp-Name header"
                )));
            }
        }
    }
    if let Some(problem) = capabilities_problem(capabilities) {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            code::INVALID_PARAMS,
            format!("Invalid params: {problem}"),
            None,
        ));
    }
    let meta = meta.map(|m| (m.get(modern::META_CLIENT_INFO).cloned(), m.get(modern::META_LOG_LEVEL)));
    Ok(Meta {
        capabilities: capabilities.clone(),
        client_info: meta.as_ref().and_then(|(info, _)| info.clone()),
        log_level: meta.and_then(|(_, level)| level.and_then(Value::as_str).map(String::from)),
    })
}

/// `Mcp-Param-*` headers against the arguments a tool's schema marks `x-mcp-header`: a
/// marked argument present in the body needs its header, equal once decoded.
fn validate_params(headers: &HeaderMap, schema: &Value, arguments: &Value) -> Result<(), Refusal> {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else { return Ok(()) };
    for (name, definition) in properties {
        let Some(suffix) = definition.get("x-mcp-header").and_then(Value::as_str) else { continue };
        let Some(value) = arguments.get(name).filter(|v| !v.is_null()) else { continue };
        let expected = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let header = format!("{}{}", modern::PARAM_HEADER_PREFIX, suffix.to_ascii_lowercase());
        match mirrored(headers, &header) {
            Some(Some(got)) if got == expected => {}
            Some(_) => {
                return Err(Refusal::mismatch(format!(
                    "Header mismatch: Mcp-Param-{suffix} must equal `{name}`"
                )));
            }
            None => {
                return Err(Refusal::mismatch(format!(
                    "Header mismatch: the Mcp-Param-{suffix} header is required"
                )));
            }
        }
    }
    Ok(())
}

/// A modern request (see the module doc).
pub(super) async fn post(state: &AppState, headers: &HeaderMap, message: &Envelope<'_>) -> Response {
    let id = message.id.map_or("null", RawValue::get).to_string();
    match message.kind() {
        Kind::Request => {}
        // The core protocol defines no client notifications over HTTP: accepted, unused.
        Kind::Notification => return StatusCode::ACCEPTED.into_response(),
        Kind::Response | Kind::Invalid => {
            return Refusal(
                StatusCode::BAD_REQUEST,
                code::INVALID_REQUEST,
                "Invalid Request: a modern client sends requests only".into(),
                None,
            )
            .respond(&id);
        }
    }
    let method = message.method.as_deref().unwrap_or_default();
    let params: Option<Value> = message.params.and_then(|p| serde_json::from_str(p.get()).ok());
    let meta = match validate(headers, method, params.as_ref()) {
        Ok(meta) => meta,
        Err(refusal) => return refusal.respond(&id),
    };
    if modern::REMOVED_METHODS.contains(&method) {
        return not_found(method).respond(&id);
    }
    let token = bearer_token(headers);
    match method {
        modern::DISCOVER => match state.discover_result(token).await {
            Ok(result) => json_response(StatusCode::OK, jsonrpc::response(&id, &result.to_string())),
            Err(e) => rpc_rejection(&id, e),
        },
        modern::SUBSCRIPTIONS_LISTEN => listen(state, token, &id).await,
        m if SERVED.contains(&m) => {
            let request =
                Request { id, method: m.to_string(), name: modern::name_of(m, params.as_ref()), meta };
            serve(state, headers, request, message.params, params.as_ref()).await
        }
        _ => not_found(method).respond(&id),
    }
}

/// One served request.
struct Request {
    /// The client's request id, raw JSON.
    id: String,
    method: String,
    name: Option<String>,
    meta: Meta,
}

async fn serve(
    state: &AppState,
    headers: &HeaderMap,
    request: Request,
    raw_params: Option<&RawValue>,
    params: Option<&Value>,
) -> Response {
    let id = request.id.clone();
    let token = bearer_token(headers);
    let operation = state.operation(&request.method, raw_params);
    if let (Ok(Operation::CallTool { server, tool, arguments, .. }), Some(caps)) =
        (&operation, RawValue::from_string(request.meta.capabilities.to_string()).ok())
        && let Some(schema) = state.tool_schema(server, tool, Some(&caps)).await
        && let Err(refusal) = validate_params(headers, &schema, arguments)
    {
        return refusal.respond(&id);
    }
    let client = json!({"clientInfo": request.meta.client_info.clone().unwrap_or(Value::Null)});
    let mut bound = match state.bind_principal(token, client, operation.as_ref().ok()).await {
        Ok(bound) => bound,
        Err(e) => return rpc_rejection(&id, e),
    };
    // This request's capabilities and log level, never a stored session's.
    bound.record.client = json!({
        "capabilities": request.meta.capabilities,
        "clientInfo": request.meta.client_info.clone().unwrap_or(Value::Null),
    });
    bound.record.log_level = request.meta.log_level.clone();
    let gateway = state.gateway.clone();
    let exchange = Exchange {
        gateway: gateway.clone(),
        call: None,
        record: bound.id.clone(),
        logs: request.meta.log_level.is_some(),
        given: params
            .and_then(|p| p.get("inputResponses"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        request,
    };
    if let Some(text) = params.and_then(|p| p.get("requestState")).and_then(Value::as_str) {
        let continued = exchange.request.name.as_deref();
        let claims = match gateway.verify_state(text, &exchange.record, &exchange.request.method, continued) {
            Ok(claims) => claims,
            Err(e) => {
                return Refusal(StatusCode::BAD_REQUEST, code::INVALID_PARAMS, e.to_string(), None)
                    .respond(&id);
            }
        };
        let responses = params.and_then(|p| p.get("inputResponses")).cloned().unwrap_or_else(|| json!({}));
        let outcome = gateway.resume(&claims, responses).await;
        return exchange.render_outcome(&outcome);
    }
    let operation = match operation {
        Ok(operation) => operation,
        Err(e) => return rpc_answer(&id, e),
    };
    let call = gateway.start_call(bound, operation);
    exchange.respond(call).await
}

/// A request and its call, on the way to the client.
struct Exchange {
    gateway: Arc<Gateway>,
    call: Option<RunningCall>,
    /// The principal record the call runs for.
    record: SessionId,
    /// Whether `notifications/message` reach the client (`_meta` set a log level).
    logs: bool,
    /// `inputResponses` sent without a `requestState`: used when the call asks for them.
    given: serde_json::Map<String, Value>,
    request: Request,
}

impl Exchange {
    /// Answers with the call's first step: the result alone as JSON, else an SSE stream.
    async fn respond(mut self, call: RunningCall) -> Response {
        self.call = Some(call);
        let Some((first, status)) = self.next_event().await else {
            return StatusCode::ACCEPTED.into_response();
        };
        if self.call.is_none() {
            return json_response(status, first);
        }
        let rest = stream::unfold(self, |mut exchange| async move {
            exchange.next_event().await.map(|(line, _)| (Event::default().data(line), exchange))
        });
        let stream =
            stream::once(async move { Event::default().data(first) }).chain(rest).map(Ok::<_, Infallible>);
        let mut response = Sse::new(stream).keep_alive(KeepAlive::default()).into_response();
        response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
        response
    }

    /// The next line for the client and the status it would have alone; `None` after the last.
    async fn next_event(&mut self) -> Option<(String, StatusCode)> {
        loop {
            let call = self.call.as_mut()?;
            match call.next().await {
                Step::Notification(line) => {
                    if self.logs || !is_log(&line) {
                        return Some((line, StatusCode::OK));
                    }
                }
                Step::Input(requests) => {
                    // Answers the client sent with the request itself go straight through.
                    let requests = self.gateway.keyed(requests);
                    let mut unanswered = Vec::new();
                    for request in requests {
                        let given = self.given.remove(&request.key).filter(Value::is_object);
                        let answered =
                            given.is_some_and(|a| self.gateway.answer_now(&self.record, &request, &a));
                        if !answered {
                            unanswered.push(request);
                        }
                    }
                    if unanswered.is_empty() {
                        continue;
                    }
                    let call = self.call.take()?;
                    return Some(self.park(call, unanswered));
                }
                Step::Done(outcome) => {
                    self.call = None;
                    return Some(self.final_line(outcome));
                }
            }
        }
    }

    /// Parks the call and answers with an `InputRequiredResult`.
    fn park(&self, call: RunningCall, requests: Vec<InputRequest>) -> (String, StatusCode) {
        let shown = crate::gateway::input_requests(&requests);
        let request = &self.request;
        let state =
            self.gateway.park(call, requests, &self.record, &request.method, request.name.as_deref(), None);
        (input_required(&request.id, &shown, &state), StatusCode::OK)
    }

    /// The final line of a finished call, and its status when sent alone.
    fn final_line(&self, outcome: Result<String, GatewayError>) -> (String, StatusCode) {
        let id = &self.request.id;
        match outcome {
            Ok(raw) => (jsonrpc::response(id, &self.decorate(&raw)), StatusCode::OK),
            Err(GatewayError::Upstream(UpstreamError::Rpc(raw))) => {
                let error = serde_json::from_str::<Value>(raw.get()).unwrap_or(Value::Null);
                self.error_line(error)
            }
            Err(e) => {
                let status = if matches!(e, GatewayError::Upstream(UpstreamError::Saturated)) {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                };
                (rpc_error_line(id, e), status)
            }
        }
    }

    /// An error object for the client: a legacy "resource not found" becomes the era's
    /// `-32602`; the era's own codes get their HTTP status.
    fn error_line(&self, mut error: Value) -> (String, StatusCode) {
        let mut error_code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
        if error_code == code::RESOURCE_NOT_FOUND && self.request.method == "resources/read" {
            error["code"] = json!(code::INVALID_PARAMS);
            error_code = code::INVALID_PARAMS;
        }
        let status = match error_code {
            modern::code::HEADER_MISMATCH
            | modern::code::MISSING_REQUIRED_CLIENT_CAPABILITY
            | modern::code::UNSUPPORTED_PROTOCOL_VERSION => StatusCode::BAD_REQUEST,
            code::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
            _ => StatusCode::OK,
        };
        (format!(r#"{{"jsonrpc":"2.0","id":{},"error":{error}}}"#, self.request.id), status)
    }

    /// A result with `resultType` (and, for lists and reads, the cache hints) added at the top.
    fn decorate(&self, raw: &str) -> String {
        let mut fields = vec![("resultType", json!(modern::RESULT_COMPLETE))];
        if CACHEABLE.contains(&self.request.method.as_str()) {
            let ttl = if self.request.method == "tools/list" { self.gateway.hint_ttl_ms() } else { 0 };
            fields.push(("ttlMs", json!(ttl)));
            fields.push(("cacheScope", json!("private")));
        }
        with_fields(raw, &fields)
    }

    /// Answers a retry with the step its call reached (notes first, as SSE, when any).
    fn render_outcome(self, outcome: &Value) -> Response {
        let notes: Vec<String> = outcome
            .get("notes")
            .and_then(Value::as_array)
            .map(|notes| {
                notes
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|l| self.logs || !is_log(l))
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        let id = &self.request.id;
        let (last, status) = match outcome.get("kind").and_then(Value::as_str) {
            Some("input") => {
                let shown = outcome.get("inputRequests").cloned().unwrap_or_else(|| json!({}));
                let state = outcome.get("requestState").and_then(Value::as_str).unwrap_or_default();
                (input_required(id, &shown, state), StatusCode::OK)
            }
            Some("done") => {
                let raw = outcome.get("result").map(Value::to_string).unwrap_or_else(|| "{}".into());
                (jsonrpc::response(id, &self.decorate(&raw)), StatusCode::OK)
            }
            _ => self.error_line(outcome.get("error").cloned().unwrap_or_else(
                || json!({"code": code::INTERNAL_ERROR, "message": "the call ended without an answer"}),
            )),
        };
        if notes.is_empty() {
            return json_response(status, last);
        }
        let events = notes
            .into_iter()
            .chain(std::iter::once(last))
            .map(|line| Ok::<_, Infallible>(Event::default().data(line)));
        let mut response = Sse::new(stream::iter(events)).into_response();
        response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
        response
    }
}

/// The line of an `InputRequiredResult`.
fn input_required(id: &str, requests: &Value, state: &str) -> String {
    let result = json!({
        "resultType": modern::RESULT_INPUT_REQUIRED,
        "inputRequests": requests,
        "requestState": state,
    });
    jsonrpc::response(id, &result.to_string())
}

/// Whether a raw notification is a log message.
fn is_log(line: &str) -> bool {
    line.contains("notifications/message")
        && serde_json::from_str::<Value>(line)
            .ok()
            .is_some_and(|n| n.get("method").and_then(Value::as_str) == Some("notifications/message"))
}

/// `raw` (a JSON object) with `fields` added at the top where it lacks them; the rest byte
/// for byte. Anything but an object passes unchanged.
fn with_fields(raw: &str, fields: &[(&str, Value)]) -> String {
    let trimmed = raw.trim_start();
    let Some(rest) = trimmed.strip_prefix('{') else { return raw.to_string() };
    // The top-level keys, only when one of the names appears anywhere (rare: parse then).
    let present: Vec<String> = if fields.iter().any(|(k, _)| raw.contains(&format!("\"{k}\""))) {
        serde_json::from_str::<serde_json::Map<String, Value>>(raw)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut out = String::with_capacity(raw.len() + 80);
    out.push('{');
    let mut added = 0;
    for (key, value) in fields {
        if present.iter().any(|p| p == key) {
            continue;
        }
        if added > 0 {
            out.push(',');
        }
        out.push_str(&format!("\"{key}\":{value}"));
        added += 1;
    }
    if added > 0 && !rest.trim_start().starts_with('}') {
        out.push(',');
    }
    out.push_str(rest);
    out
}

/// `subscriptions/listen`: acknowledged at once with the notification types honoured
/// (none: each child lives for one request, so no list ever changes under a client),
/// then held open with keep-alives until the client leaves or the lifetime ends.
async fn listen(state: &AppState, token: Option<&str>, id: &str) -> Response {
    let client = json!({"clientInfo": Value::Null});
    if let Err(e) = state.bind_principal(token, client, None).await {
        return rpc_rejection(id, e);
    }
    if !state.modern.try_listen(MAX_LISTENERS) {
        let message =
            format!("this worker holds {MAX_LISTENERS} subscriptions/listen streams already; retry later");
        return Refusal(StatusCode::SERVICE_UNAVAILABLE, code::GATEWAY_ERROR, message, None).respond(id);
    }
    let guard = ListenerGuard(state.gateway.clone());
    let subscription: Value = serde_json::from_str(id).unwrap_or(Value::Null);
    let ack = json!({
        "jsonrpc": "2.0",
        "method": "notifications/subscriptions/acknowledged",
        "params": {"_meta": {modern::META_SUBSCRIPTION_ID: subscription}, "notifications": {}},
    });
    let closing = json!({
        "jsonrpc": "2.0",
        "id": subscription,
        "result": {"resultType": modern::RESULT_COMPLETE, "_meta": {modern::META_SUBSCRIPTION_ID: subscription}},
    });
    let end = stream::once(async move {
        tokio::time::sleep(LISTEN_LIFETIME).await;
        drop(guard);
        Event::default().data(closing.to_string())
    });
    let stream = stream::once(async move { Event::default().data(ack.to_string()) })
        .chain(end)
        .map(Ok::<_, Infallible>);
    let mut response = Sse::new(stream).keep_alive(KeepAlive::default()).into_response();
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Counts an open listen stream; dropped with the stream.
struct ListenerGuard(Arc<Gateway>);

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        self.0.modern.end_listen();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_added_at_the_top_of_an_object_only_where_missing() {
        let fields = [("resultType", json!("complete"))];
        assert_eq!(with_fields("{}", &fields), r#"{"resultType":"complete"}"#);
        assert_eq!(with_fields(r#"{"a":1}"#, &fields), r#"{"resultType":"complete","a":1}"#);
        assert_eq!(
            with_fields(r#"{"resultType":"input_required"}"#, &fields),
            r#"{"resultType":"input_required"}"#
        );
        let nested = r#"{"x":{"resultType":1}}"#;
        assert_eq!(with_fields(nested, &fields), r#"{"resultType":"complete","x":{"resultType":1}}"#);
        assert_eq!(with_fields("[1]", &fields), "[1]");
    }

    #[test]
    fn mcp_param_headers_must_mirror_marked_arguments() {
        let schema = json!({"properties": {"region": {"type": "string", "x-mcp-header": "Region"}}});
        let mut headers = HeaderMap::new();
        assert!(validate_params(&headers, &schema, &json!({})).is_ok(), "absent argument, no header needed");
        assert!(validate_params(&headers, &schema, &json!({"region": "eu"})).is_err(), "header missing");
        headers.insert("mcp-param-region", HeaderValue::from_static("=?base64?ZXU=?="));
        assert!(validate_params(&headers, &schema, &json!({"region": "eu"})).is_ok());
        headers.insert("mcp-param-region", HeaderValue::from_static("=?base64?ZXU?="));
        assert!(validate_params(&headers, &schema, &json!({"region": "eu"})).is_err(), "bad padding");
    }
}
