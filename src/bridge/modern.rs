//! The modern era (2026-07-28) of the `mcp` transport, for a gateway that speaks it.
//!
//! The host (Claude Desktop) stays a legacy stdio client: it opens with `initialize`
//! and answers server→client requests. Towards the gateway every request is
//! stateless: `params._meta` carries the protocol version, the host's capabilities
//! and client info; the headers `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name` and
//! the `Mcp-Param-*` of the tool's `x-mcp-header` annotations mirror the body (values
//! outside plain ASCII in the `=?base64?…?=` form). There is no session to open,
//! renew or end.
//!
//! - **Era** (`--protocol`): `modern` is taken as given; `auto` sends `server/discover`
//!   first, as the specification's dual-era clients do: a `DiscoverResult` (or a modern
//!   error: -32020/-32021/-32022) means modern, any other error or a timeout legacy,
//!   whatever its code. An unreachable gateway teaches nothing (the next request probes
//!   again). What was found holds for the gateway for the bridge's lifetime.
//! - **Version**: `-32022` with `data.supported` naming a version this build speaks is
//!   retried once with it.
//! - **`initialize`** from the host is answered from the gateway's discover result
//!   (capabilities, server info, instructions) with a legacy version the host asked for.
//! - **`InputRequiredResult`**: each `inputRequests` entry is asked of the host as a
//!   legacy server→client request (`elicitation/create`, `sampling/createMessage`,
//!   `roots/list`), and the request is sent again, under a new id, with the answers as
//!   `inputResponses` and the opaque `requestState` echoed byte for byte (bounded
//!   rounds).
//! - **Tools**: `tools/list` results are checked for valid `x-mcp-header`
//!   annotations; tools with an invalid one are left out (the specification's rule),
//!   the rest remembered so that `tools/call` mirrors the designated arguments.
//! - Host notifications are not sent (the modern HTTP transport defines none from the
//!   client; cancelling is closing the request's stream, which dropping the call does).
//!
//! A child module of `mcp`, so it shares its HTTP client, credentials and decoders.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use super::{InitializeParamsHead, McpGateway};
use crate::bridge::Protocol;
use crate::bridge::error::GatewayError;
use crate::bridge::jsonrpc::{self, Message, Outcome};
use crate::bridge::stdio::Outbox;
use crate::protocol::modern::{self, Era};
use crate::protocol::sse::SseDecoder;
use crate::protocol::{ACCEPT_JSON_AND_SSE, EVENT_STREAM, STDIO_VERSIONS, VERSION_HEADER, negotiate};

/// Most rounds of `InputRequiredResult` answered for one host request.
const MAX_INPUT_ROUNDS: usize = 16;
/// Most tools whose `x-mcp-header` annotations are remembered.
const MAX_TOOLS: usize = 4096;
/// Most host answers awaited at once.
const MAX_WAITING: usize = 1024;

/// What the bridge knows of the gateway's era and tools.
pub(super) struct State {
    choice: Protocol,
    era: Mutex<Option<Era>>,
    /// The modern version spoken (the newest both sides know).
    version: Mutex<String>,
    /// `x-mcp-header` annotations of the tools listed, by tool name.
    tools: Mutex<HashMap<String, ToolHeaders>>,
    /// Input requests asked of the host, by the bridge's id key.
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
}

/// A tool's mirrored parameters: (property path, header name), or why it was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ToolHeaders {
    Valid(Vec<(Vec<String>, String)>),
    Rejected(String),
}

/// What `server/discover` told.
enum Probe {
    Modern(Option<Box<RawValue>>),
    Legacy,
    Unreachable,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    pub(super) fn new(choice: Protocol) -> Self {
        let era = match choice {
            Protocol::Auto => None,
            Protocol::Legacy => Some(Era::Legacy),
            Protocol::Modern => Some(Era::Modern),
        };
        Self {
            choice,
            era: Mutex::new(era),
            version: Mutex::new(modern::VERSION.to_owned()),
            tools: Mutex::new(HashMap::new()),
            waiting: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn era(&self) -> Option<Era> {
        *lock(&self.era)
    }

    fn learn(&self, era: Era) {
        if self.choice == Protocol::Auto {
            let mut known = lock(&self.era);
            if known.is_none() {
                tracing::info!(?era, "gateway protocol era found");
            }
            *known = Some(era);
        }
    }
}

impl McpGateway {
    /// Hook of `initialize`: in the modern era (forced, or found by the probe) the host's
    /// `initialize` is answered from the gateway's `server/discover`; `None`: legacy, go on
    /// with the handshake.
    pub(super) async fn modern_initialize(&self, id: &RawValue, outbox: &Outbox) -> Option<String> {
        if self.modern.era() == Some(Era::Legacy) {
            return None;
        }
        match self.probe(outbox).await {
            Probe::Modern(discovered) => {
                let result = self.host_initialize_result(discovered.as_deref());
                Some(jsonrpc::result_line(id, &result.to_string()))
            }
            Probe::Legacy => None,
            Probe::Unreachable if self.modern.era() == Some(Era::Modern) => {
                Some(self.local_initialize(id, "the gateway did not answer server/discover"))
            }
            Probe::Unreachable => None,
        }
    }

    /// Hook of `forward`: a host request in the modern era, answered here; `None`: legacy.
    pub(super) async fn modern_forward(
        &self,
        line: &[u8],
        outbox: &Outbox,
    ) -> Option<Result<Outcome, GatewayError>> {
        match self.modern.era() {
            Some(Era::Legacy) => return None,
            Some(Era::Modern) => {}
            None => match self.probe(outbox).await {
                Probe::Modern(_) => {}
                Probe::Legacy | Probe::Unreachable => return None,
            },
        }
        let Ok(Message::Request { method, params, .. }) = jsonrpc::parse(line) else {
            return Some(Err(GatewayError::Protocol("the request could not be read".into())));
        };
        Some(self.modern_call(&method, params.as_deref(), outbox).await)
    }

    /// Hook of `notify`: in the modern era host notifications are not sent.
    pub(super) fn modern_drops_notifications(&self) -> bool {
        self.modern.era() == Some(Era::Modern)
    }

    /// Hook of `relay_response`: the host's answer to an input request; `false` if the id
    /// is not one of them.
    pub(super) fn modern_answer(&self, id: &RawValue, outcome: &Outcome) -> bool {
        let Some(waiter) = lock(&self.modern.waiting).remove(&jsonrpc::id_key(id)) else { return false };
        let copy = match outcome {
            Outcome::Result(r) => Outcome::Result(r.clone()),
            Outcome::Error(e) => Outcome::Error(e.clone()),
        };
        let _ = waiter.send(copy);
        true
    }

    /// `server/discover`, retried once with a version the gateway names in `-32022`.
    async fn probe(&self, outbox: &Outbox) -> Probe {
        for _ in 0..2 {
            let outcome = match self.modern_post(modern::DISCOVER, None, outbox).await {
                Ok(outcome) => outcome,
                Err(GatewayError::JsonRpc(error)) => Outcome::Error(error),
                Err(GatewayError::TimedOut { .. }) => {
                    // No answer in time: legacy, as the specification says.
                    self.modern.learn(Era::Legacy);
                    return self.probe_verdict();
                }
                Err(GatewayError::BadRequest { .. }) => {
                    self.modern.learn(Era::Legacy);
                    return self.probe_verdict();
                }
                Err(e) => {
                    tracing::debug!(error = %e.user_message(), "server/discover failed; the era stays unknown");
                    return Probe::Unreachable;
                }
            };
            match outcome {
                Outcome::Result(result) if !names_spoken_version(&result) => {
                    // Not a DiscoverResult with a version spoken here (a legacy server
                    // answering anything with a result): legacy.
                    self.modern.learn(Era::Legacy);
                    return self.probe_verdict();
                }
                Outcome::Result(result) => {
                    self.modern.learn(Era::Modern);
                    return match self.modern.era() {
                        Some(Era::Legacy) => Probe::Legacy,
                        _ => Probe::Modern(Some(result)),
                    };
                }
                Outcome::Error(error) => {
                    let code = error_code(&error);
                    if code == Some(modern::code::UNSUPPORTED_PROTOCOL_VERSION)
                        && let Some(version) = spoken_version(&error)
                        && version != *lock(&self.modern.version)
                    {
                        *lock(&self.modern.version) = version;
                        continue;
                    }
                    if code.is_some_and(modern::code::is_modern) {
                        // A modern server that refused this probe: still modern.
                        self.modern.learn(Era::Modern);
                    } else {
                        self.modern.learn(Era::Legacy);
                    }
                    return self.probe_verdict();
                }
            }
        }
        self.probe_verdict()
    }

    fn probe_verdict(&self) -> Probe {
        match self.modern.era() {
            Some(Era::Modern) => Probe::Modern(None),
            _ => Probe::Legacy,
        }
    }

    /// The host's `initialize` result, from the gateway's discover result.
    fn host_initialize_result(&self, discovered: Option<&RawValue>) -> Value {
        let requested = self.host_init_field::<InitializeParamsHead>().and_then(|p| p.protocol_version);
        let parsed: Value =
            discovered.and_then(|d| serde_json::from_str(d.get()).ok()).unwrap_or(Value::Null);
        let capabilities = parsed
            .get("capabilities")
            .filter(|c| c.is_object())
            .cloned()
            .unwrap_or_else(|| serde_json::json!({"tools": {}, "resources": {}, "prompts": {}}));
        let server_info = parsed
            .get("_meta")
            .and_then(|m| m.get(modern::META_SERVER_INFO))
            .or_else(|| parsed.get("serverInfo"))
            .filter(|i| i.is_object())
            .cloned()
            .unwrap_or_else(
                || serde_json::json!({"name": "switchboard-bridge", "version": env!("CARGO_PKG_VERSION")}),
            );
        let mut result = serde_json::json!({
            "protocolVersion": negotiate(requested.as_deref(), STDIO_VERSIONS),
            "capabilities": capabilities,
            "serverInfo": server_info,
        });
        if let Some(instructions) = parsed.get("instructions").filter(|i| i.is_string()) {
            result["instructions"] = instructions.clone();
        }
        result
    }

    fn host_init_field<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        let params = self.host_init.lock().ok()?.as_ref().map(|p| p.get().to_owned())?;
        serde_json::from_str(&params).ok()
    }

    /// The `_meta` of every modern request: the host's capabilities and client info.
    fn meta(&self) -> String {
        #[derive(serde::Deserialize)]
        struct HostInit {
            #[serde(default)]
            capabilities: Option<Box<RawValue>>,
            #[serde(rename = "clientInfo", default)]
            client_info: Option<Box<RawValue>>,
        }
        let host = self.host_init_field::<HostInit>();
        let capabilities = host.as_ref().and_then(|h| h.capabilities.as_ref()).map(|c| c.get().to_owned());
        let info = host
            .and_then(|h| h.client_info)
            .map(|i| i.get().to_owned())
            .filter(|i| i.trim_start().starts_with('{'))
            .unwrap_or_else(|| {
                format!(r#"{{"name":"switchboard-bridge","version":"{}"}}"#, env!("CARGO_PKG_VERSION"))
            });
        let version = lock(&self.modern.version).clone();
        modern::meta_object(&version, capabilities.as_deref(), &info, None)
    }

    /// One host request, the modern way: tools known for their headers, input requests
    /// answered by the host, tools with invalid headers left out of lists.
    async fn modern_call(
        &self,
        method: &str,
        params: Option<&RawValue>,
        outbox: &Outbox,
    ) -> Result<Outcome, GatewayError> {
        if method == "tools/call" {
            self.know_tool(params, outbox).await?;
        }
        let mut params: Option<String> = params.map(|p| p.get().to_owned());
        let mut retried_version = false;
        for _ in 0..MAX_INPUT_ROUNDS {
            let outcome = match self.modern_post(method, params.as_deref(), outbox).await {
                Err(GatewayError::JsonRpc(error)) => Outcome::Error(error),
                other => other?,
            };
            let result = match outcome {
                Outcome::Error(error) => {
                    if !retried_version
                        && error_code(&error) == Some(modern::code::UNSUPPORTED_PROTOCOL_VERSION)
                        && let Some(version) = spoken_version(&error)
                    {
                        retried_version = true;
                        *lock(&self.modern.version) = version;
                        continue;
                    }
                    return Ok(Outcome::Error(error));
                }
                Outcome::Result(result) => result,
            };
            if result_type(&result).as_deref() == Some(modern::RESULT_INPUT_REQUIRED) {
                params = Some(self.answer_input(params.as_deref(), &result, outbox).await?);
                continue;
            }
            if method == "tools/list" {
                return Ok(Outcome::Result(self.checked_tools(result)));
            }
            return Ok(Outcome::Result(result));
        }
        Err(GatewayError::Protocol(format!(
            "the gateway asked for input more than {MAX_INPUT_ROUNDS} times for one request"
        )))
    }

    /// Asks the host each input request of an `InputRequiredResult`; the params of the
    /// retry: the request's own, with `inputResponses` and the `requestState` as sent.
    async fn answer_input(
        &self,
        params: Option<&str>,
        result: &RawValue,
        outbox: &Outbox,
    ) -> Result<String, GatewayError> {
        let input = modern::InputRequired::parse(result.get()).map_err(GatewayError::Protocol)?;
        let mut responses = serde_json::Map::new();
        for (key, request) in input.requests {
            let n = self.next_id.fetch_add(1, Ordering::Relaxed);
            let bridge_id = format!("\"switchboard-bridge-input-{n}\"");
            let (tx, rx) = oneshot::channel();
            {
                let mut waiting = lock(&self.modern.waiting);
                if waiting.len() >= MAX_WAITING {
                    waiting.clear();
                }
                waiting.insert(jsonrpc::id_key(&raw(&bridge_id)?), tx);
            }
            outbox
                .send(jsonrpc::request_line(Some(&bridge_id), &request.method, request.params.as_deref()))
                .await;
            let answer = tokio::time::timeout(self.timeout, rx).await;
            let answer = match answer {
                Ok(Ok(Outcome::Result(answer))) => answer,
                Ok(Ok(Outcome::Error(error))) => return Err(GatewayError::JsonRpc(error)),
                Ok(Err(_)) | Err(_) => {
                    lock(&self.modern.waiting).remove(&jsonrpc::id_key(&raw(&bridge_id)?));
                    return Err(GatewayError::Protocol(format!(
                        "the host did not answer the gateway's {} request in time",
                        request.method
                    )));
                }
            };
            let answer: Value = serde_json::from_str(answer.get())
                .map_err(|e| GatewayError::Protocol(format!("the host's answer: {e}")))?;
            responses.insert(key, answer);
        }
        let responses = Value::Object(responses).to_string();
        modern::retry_params(params, &responses, input.state.as_deref().map(RawValue::get))
            .ok_or_else(|| GatewayError::Protocol("the request's params are not an object".into()))
    }

    /// Makes sure the tool of a `tools/call` is known for its `x-mcp-header`s (a
    /// `tools/list` first when it is not); a tool rejected for invalid ones is refused.
    async fn know_tool(&self, params: Option<&RawValue>, outbox: &Outbox) -> Result<(), GatewayError> {
        let parsed = params.and_then(|p| serde_json::from_str::<Value>(p.get()).ok());
        let Some(name) = modern::name_of("tools/call", parsed.as_ref()) else { return Ok(()) };
        if !lock(&self.modern.tools).contains_key(&name) {
            let mut cursor: Option<String> = None;
            for _ in 0..16 {
                let params = cursor
                    .as_ref()
                    .map(|c| raw(&serde_json::json!({ "cursor": c }).to_string()))
                    .transpose()?;
                let listed = Box::pin(self.modern_call("tools/list", params.as_deref(), outbox)).await;
                let Ok(Outcome::Result(page)) = listed else { break };
                cursor = serde_json::from_str::<Value>(page.get())
                    .ok()
                    .and_then(|p| p.get("nextCursor").and_then(Value::as_str).map(String::from));
                if cursor.is_none() {
                    break;
                }
            }
        }
        match lock(&self.modern.tools).get(&name) {
            Some(ToolHeaders::Rejected(reason)) => Err(GatewayError::JsonRpc(raw(&format!(
                r#"{{"code":-32602,"message":{}}}"#,
                serde_json::to_string(&format!("tool {name} is not offered: {reason}")).unwrap_or_default()
            ))?)),
            _ => Ok(()),
        }
    }

    /// A `tools/list` result with the tools whose `x-mcp-header`s are invalid left out;
    /// the others' annotations remembered.
    fn checked_tools(&self, result: Box<RawValue>) -> Box<RawValue> {
        let Ok(mut page) = serde_json::from_str::<Value>(result.get()) else { return result };
        let Some(list) = page.get_mut("tools").and_then(Value::as_array_mut) else { return result };
        let mut rejected = 0usize;
        let mut tools = lock(&self.modern.tools);
        list.retain(|tool| {
            let Some(name) = tool.get("name").and_then(Value::as_str) else { return true };
            let headers = tool_headers(tool.get("inputSchema").unwrap_or(&Value::Null));
            if tools.len() >= MAX_TOOLS && !tools.contains_key(name) {
                tools.clear();
            }
            let keep = matches!(headers, ToolHeaders::Valid(_));
            if let ToolHeaders::Rejected(reason) = &headers {
                tracing::warn!(tool = name, reason, "tool left out: invalid x-mcp-header");
                rejected += 1;
            }
            tools.insert(name.to_owned(), headers);
            keep
        });
        drop(tools);
        if rejected == 0 {
            return result;
        }
        RawValue::from_string(page.to_string()).unwrap_or(result)
    }

    /// POSTs one modern request (fresh id, `_meta`, mirrored headers); relays the
    /// notifications of an SSE answer to the host; the response's outcome.
    async fn modern_post(
        &self,
        method: &str,
        params: Option<&str>,
        outbox: &Outbox,
    ) -> Result<Outcome, GatewayError> {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("\"switchboard-bridge-m{n}\"");
        let body_params = modern::with_meta(params, &self.meta());
        let parsed_params: Option<Value> = serde_json::from_str(&body_params).ok();
        let body =
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":{},"params":{body_params}}}"#, json(method));
        let version = lock(&self.modern.version).clone();
        let name = modern::name_of(method, parsed_params.as_ref());
        let param_headers = match &parsed_params {
            Some(params) if method == "tools/call" => self.param_headers(params),
            _ => Vec::new(),
        };
        let body = bytes::Bytes::from(body);
        // Built afresh for each attempt: an OAuth challenge answered in between changes the token.
        let post = || {
            let mut request = self
                .decorate(self.http.post(&self.endpoint), None)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(reqwest::header::ACCEPT, ACCEPT_JSON_AND_SSE)
                .header(VERSION_HEADER, version.clone())
                .header(modern::METHOD_HEADER, modern::encode_header_value(method));
            if let Some(name) = &name {
                request = request.header(modern::NAME_HEADER, modern::encode_header_value(name));
            }
            for (header, value) in &param_headers {
                request = request.header(header, value);
            }
            request.body(body.clone())
        };
        let response = crate::bridge::oauth::send_with(self.oauth.as_deref(), || self.send(post())).await?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let body = self.body(response).await.unwrap_or_default();
            return Err(match self.status_failure(status, &body, false) {
                crate::bridge::session::Failure::SessionGone(message) => {
                    GatewayError::SessionLost { message }
                }
                crate::bridge::session::Failure::Other(e) => e,
            });
        }
        let expect = jsonrpc::id_key(&raw(&id)?);
        let is_sse = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with(EVENT_STREAM));
        if !is_sse {
            let body = self.body(response).await?;
            return self
                .modern_message(&body, &expect, outbox)
                .await
                .ok_or_else(|| GatewayError::Protocol("the answer did not contain the response".into()));
        }
        let mut response = response;
        let mut parser = SseDecoder::new();
        loop {
            let chunk = match tokio::time::timeout(self.timeout, response.chunk()).await {
                Err(_) => return Err(GatewayError::TimedOut { after: self.timeout }),
                Ok(Err(e)) => {
                    return Err(GatewayError::Protocol(format!("the SSE stream broke: {}", e.without_url())));
                }
                Ok(Ok(None)) => {
                    // The modern era has no resumption: a stream without the response is lost.
                    return Err(GatewayError::Protocol("the SSE stream ended before the response".into()));
                }
                Ok(Ok(Some(chunk))) => chunk,
            };
            for event in parser.push(&chunk).map_err(|e| GatewayError::Protocol(e.to_string()))? {
                if event.data.trim().is_empty() {
                    continue;
                }
                if let Some(outcome) = self.modern_message(event.data.as_bytes(), &expect, outbox).await {
                    return Ok(outcome);
                }
            }
        }
    }

    /// One message of a modern answer: the outcome if it is the response awaited;
    /// notifications go to the host; requests (which a modern server must not send) are
    /// dropped.
    async fn modern_message(&self, raw_message: &[u8], expect: &str, outbox: &Outbox) -> Option<Outcome> {
        match jsonrpc::parse(raw_message) {
            Ok(Message::Response { id, outcome }) if jsonrpc::id_key(&id) == expect => Some(outcome),
            // A modern error whose id is null answers the one request of this POST.
            Ok(Message::Response { outcome: outcome @ Outcome::Error(_), .. }) => Some(outcome),
            Ok(Message::Response { id, .. }) => {
                tracing::debug!(id = id.get(), "ignoring a gateway response for another id");
                None
            }
            Ok(Message::Notification { .. }) => {
                let text = String::from_utf8_lossy(raw_message);
                outbox.send(jsonrpc::one_line(text.trim()).into_owned()).await;
                None
            }
            Ok(Message::Request { method, .. }) => {
                tracing::warn!(method, "a modern gateway sent a request on a response stream; ignored");
                None
            }
            Err(_) => {
                // An error with `"id": null` parses as nothing the envelope knows.
                let value: Value = serde_json::from_slice(raw_message).ok()?;
                let error = value.get("error").filter(|_| value.get("id").is_some_and(Value::is_null))?;
                RawValue::from_string(error.to_string()).ok().map(Outcome::Error)
            }
        }
    }

    /// The `Mcp-Param-*` headers of a `tools/call`, from the tool's remembered annotations.
    fn param_headers(&self, params: &Value) -> Vec<(String, String)> {
        let Some(name) = params.get("name").and_then(Value::as_str) else { return Vec::new() };
        let tools = lock(&self.modern.tools);
        let Some(ToolHeaders::Valid(mirrored)) = tools.get(name) else { return Vec::new() };
        let arguments = params.get("arguments").unwrap_or(&Value::Null);
        mirrored
            .iter()
            .filter_map(|(path, header)| {
                let value = path.iter().try_fold(arguments, |v, key| v.get(key))?;
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Bool(b) => b.to_string(),
                    Value::Number(n) => n.to_string(),
                    _ => return None,
                };
                Some((format!("Mcp-Param-{header}"), modern::encode_header_value(&text)))
            })
            .collect()
    }
}

/// A tool's `x-mcp-header` annotations, checked as the specification says: each a
/// non-empty HTTP token, case-insensitively unique, on an integer, string or boolean
/// property reached from the root through `properties` only.
pub(super) fn tool_headers(schema: &Value) -> ToolHeaders {
    fn reachable(schema: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, String, Value)>) {
        let Some(properties) = schema.get("properties").and_then(Value::as_object) else { return };
        for (key, property) in properties {
            path.push(key.clone());
            if let Some(header) = property.get("x-mcp-header") {
                out.push((
                    path.clone(),
                    header.as_str().map(String::from).unwrap_or_default(),
                    property.clone(),
                ));
            }
            if path.len() < 32 {
                reachable(property, path, out);
            }
            path.pop();
        }
    }
    fn count(value: &Value, depth: usize) -> usize {
        if depth > 64 {
            return 0;
        }
        match value {
            Value::Object(map) => {
                map.iter().map(|(k, v)| usize::from(k == "x-mcp-header") + count(v, depth + 1)).sum()
            }
            Value::Array(items) => items.iter().map(|v| count(v, depth + 1)).sum(),
            _ => 0,
        }
    }
    let mut found = Vec::new();
    reachable(schema, &mut Vec::new(), &mut found);
    if count(schema, 0) != found.len() {
        return ToolHeaders::Rejected("an x-mcp-header is not reachable through properties alone".into());
    }
    let mut seen = std::collections::HashSet::new();
    let mut mirrored = Vec::new();
    for (path, header, property) in found {
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if header.is_empty() {
            return ToolHeaders::Rejected("an x-mcp-header is empty".into());
        }
        if !header.chars().all(token) {
            return ToolHeaders::Rejected(format!("x-mcp-header {header:?} is not an HTTP token"));
        }
        if !seen.insert(header.to_ascii_lowercase()) {
            return ToolHeaders::Rejected(format!("x-mcp-header {header:?} is not unique"));
        }
        let primitive = match property.get("type") {
            Some(Value::String(t)) => matches!(t.as_str(), "string" | "integer" | "boolean"),
            _ => false,
        };
        if !primitive {
            return ToolHeaders::Rejected(format!("x-mcp-header {header:?} is on a non-primitive property"));
        }
        mirrored.push((path, header));
    }
    ToolHeaders::Valid(mirrored)
}

fn raw(text: &str) -> Result<Box<RawValue>, GatewayError> {
    RawValue::from_string(text.to_owned()).map_err(|e| GatewayError::Protocol(e.to_string()))
}

fn json(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// A JSON-RPC error's code.
fn error_code(error: &RawValue) -> Option<i64> {
    serde_json::from_str::<Value>(error.get()).ok()?.get("code")?.as_i64()
}

/// A version this build speaks among `data.supported` of an `UnsupportedProtocolVersion`.
fn spoken_version(error: &RawValue) -> Option<String> {
    let value: Value = serde_json::from_str(error.get()).ok()?;
    let supported = value.get("data")?.get("supported")?.as_array()?;
    supported.iter().filter_map(Value::as_str).find(|v| modern::VERSIONS.contains(v)).map(String::from)
}

/// Whether a `DiscoverResult` names a version this build speaks in `supportedVersions`.
fn names_spoken_version(result: &RawValue) -> bool {
    #[derive(serde::Deserialize)]
    struct Discover {
        #[serde(rename = "supportedVersions", default)]
        supported_versions: Vec<String>,
    }
    serde_json::from_str::<Discover>(result.get())
        .is_ok_and(|d| d.supported_versions.iter().any(|v| modern::VERSIONS.contains(&v.as_str())))
}

/// A result's `resultType` (absent: complete).
fn result_type(result: &RawValue) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "resultType", default)]
        result_type: Option<String>,
    }
    serde_json::from_str::<Head>(result.get()).ok()?.result_type
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn x_mcp_headers_are_checked_as_the_specification_says() {
        let valid = json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "n": {"type": "integer", "x-mcp-header": "N"},
            "nested": {"type": "object", "properties": {"flag": {"type": "boolean", "x-mcp-header": "Flag"}}},
            "query": {"type": "string"}}});
        let ToolHeaders::Valid(mut mirrored) = tool_headers(&valid) else { panic!("valid") };
        mirrored.sort();
        assert_eq!(
            mirrored,
            [
                (vec!["n".to_string()], "N".to_string()),
                (vec!["nested".to_string(), "flag".to_string()], "Flag".to_string()),
                (vec!["region".to_string()], "Region".to_string()),
            ]
        );
        for bad in [
            json!({"properties": {"v": {"type": "string", "x-mcp-header": ""}}}),
            json!({"properties": {"v": {"type": "object", "x-mcp-header": "V"}}}),
            json!({"properties": {"v": {"type": "number", "x-mcp-header": "V"}}}),
            json!({"properties": {"v": {"type": "null", "x-mcp-header": "V"}}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": "My"}, "b": {"type": "string", "x-mcp-header": "my"}}}),
            json!({"properties": {"v": {"type": "string", "x-mcp-header": "My Region"}}}),
            json!({"properties": {"v": {"type": "string", "x-mcp-header": "Region:Primary"}}}),
            json!({"properties": {"v": {"type": "string", "x-mcp-header": "Région"}}}),
            json!({"properties": {"v": {"type": "string", "x-mcp-header": "Region\t1"}}}),
            json!({"properties": {"v": {"type": "array", "items": {"type": "string", "x-mcp-header": "Items"}}}}),
            json!({"anyOf": [{"properties": {"v": {"type": "string", "x-mcp-header": "V"}}}]}),
        ] {
            assert!(matches!(tool_headers(&bad), ToolHeaders::Rejected(_)), "{bad}");
        }
        assert_eq!(tool_headers(&Value::Null), ToolHeaders::Valid(Vec::new()));
    }

    #[test]
    fn a_spoken_version_is_read_from_an_unsupported_version_error() {
        let error = RawValue::from_string(
            r#"{"code":-32022,"message":"x","data":{"supported":["2030-01-01","2026-07-28"],"requested":"1"}}"#.into(),
        )
        .unwrap();
        assert_eq!(spoken_version(&error).as_deref(), Some("2026-07-28"));
        assert_eq!(error_code(&error), Some(-32022));
        let none =
            RawValue::from_string(r#"{"code":-32022,"data":{"supported":["2030-01-01"]}}"#.into()).unwrap();
        assert_eq!(spoken_version(&none), None);
        let input = RawValue::from_string(r#"{"resultType":"input_required"}"#.into()).unwrap();
        assert_eq!(result_type(&input).as_deref(), Some("input_required"));
        assert_eq!(result_type(&RawValue::from_string("{}".into()).unwrap()), None);
    }
}
