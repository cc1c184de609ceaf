//! What MCP requests on `/mcp` become: the session's `initialize`, each request as an
//! [`Operation`] (the merged catalogue, a tool call through the cache, or a request
//! forwarded untouched), cancellations of requests running on any worker, and the
//! client's answers to server requests, routed to the worker holding the child.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Bound, Gateway, GatewayError, ToolCall};
use crate::protocol::{MAX_CAPABILITIES_BYTES, MAX_CAPABILITIES_DEPTH, json_depth};
use crate::session::{SessionId, SessionRecord};
use crate::telemetry::events::store::{RecordUnreadable, StoredKind, UnreadableReason};
use crate::upstream::{Call, Client, McpManager, Relay, ReplyRouter};

/// Most published messages queued for this worker before the subscription waits.
const DISPATCH_QUEUE: usize = 1024;

/// What a request becomes upstream.
pub enum Operation {
    /// `tools/list`: the merged catalogue (cached; no spawn on a hit).
    ListTools,
    /// `tools/call`: routed, through the result cache.
    CallTool { server: String, tool: String, arguments: Value, params: Box<RawValue> },
    /// Anything else: forwarded untouched to the (first) server.
    Forward { server: String, method: String, params: Option<Box<RawValue>> },
}

impl Gateway {
    /// `initialize` on `/mcp`: checks the credentials first (a refused principal never
    /// costs a spawn), merges the servers' capabilities, creates the session. Returns
    /// the new session's id and the `InitializeResult`.
    pub async fn initialize(
        &self,
        credentials: &Value,
        client: Value,
        version: &str,
    ) -> Result<(SessionId, Value), GatewayError> {
        let verified = self.auth.verify(credentials).await?;
        // What the servers see: in auth mode `oauth`, never the access token unless opted in.
        let mut seen = self.auth.stored_credentials(credentials, &verified);
        if let Some(token) = credentials.get("token").and_then(Value::as_str).filter(|_| self.auth.is_oauth())
        {
            self.auth.request_credentials(&mut seen, &verified, token);
        }
        let result = self.initialize_result(&seen, version).await?;
        let session = self.create_session(credentials, client, Some(version.to_string())).await?;
        Ok((session, result))
    }

    /// Decides what a request becomes.
    pub fn operation(&self, method: &str, params: Option<&RawValue>) -> Result<Operation, GatewayError> {
        let invalid = |m: &str| GatewayError::BadRequest(m.to_string());
        match method {
            "tools/list" => Ok(Operation::ListTools),
            "tools/call" => {
                let parsed: Value = params
                    .and_then(|p| serde_json::from_str(p.get()).ok())
                    .ok_or_else(|| invalid("tools/call needs params"))?;
                let name = parsed
                    .get("name")
                    .and_then(|n| n.as_str())
                    .ok_or_else(|| invalid("tools/call needs a name"))?;
                let (server, tool) = self.route_tool(name)?;
                let arguments = parsed.get("arguments").cloned().unwrap_or_else(|| serde_json::json!({}));
                let params = if tool == name {
                    // One server: the params go through byte for byte.
                    params.map(RawValue::to_owned).ok_or_else(|| invalid("tools/call needs params"))?
                } else {
                    let mut renamed = parsed.clone();
                    renamed["name"] = Value::String(tool.to_string());
                    RawValue::from_string(renamed.to_string()).map_err(|e| invalid(&e.to_string()))?
                };
                Ok(Operation::CallTool {
                    server: server.to_string(),
                    tool: tool.to_string(),
                    arguments,
                    params,
                })
            }
            _ => {
                let server = self.manager.server_names().first().map(|s| s.to_string()).unwrap_or_default();
                Ok(Operation::Forward {
                    server,
                    method: method.to_string(),
                    params: params.map(RawValue::to_owned),
                })
            }
        }
    }

    /// Runs an operation for a bound session; the raw JSON-RPC `result`.
    pub async fn perform(
        &self,
        session: &Bound,
        operation: Operation,
        relay: Option<&Relay>,
    ) -> Result<String, GatewayError> {
        let capabilities = client_capabilities(&session.record);
        let client =
            Client { capabilities: capabilities.as_deref(), log_level: session.record.log_level.as_deref() };
        match operation {
            Operation::ListTools => {
                let tools = self.all_tools(&session.credentials, client.capabilities).await?;
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
                Ok(self.call_tool_bound(session, &call, client, relay).await?.0)
            }
            Operation::Forward { server, method, params } => {
                let call = Call {
                    server: &server,
                    credentials: &session.credentials,
                    client,
                    method: &method,
                    params: params.as_deref(),
                    relay,
                    session: Some(session.id.as_str()),
                    list_tools: false,
                    principal: Some(&session.record.principal),
                };
                let outcome = self.manager.call_with(call).await?;
                Ok(outcome.result.get().to_string())
            }
        }
    }

    /// `notifications/cancelled` for `request_id` (raw JSON): cancels it here, or tells every
    /// worker (the one running it cancels it).
    pub async fn cancel(&self, session: &SessionId, request_id: &str) {
        if self.inflight.cancel(session.as_str(), request_id) {
            return;
        }
        let payload = serde_json::json!({"session": session.as_str(), "request": request_id}).to_string();
        if let Err(e) = self.store.publish(&self.keys.channel("cancel"), &payload).await {
            tracing::warn!(error = %e, "could not route a cancellation");
        }
    }

    /// The client's answer to a server request (`sb-<worker>-<n>`): delivered here, or
    /// published to the worker that holds the child. Ids of no worker are ignored.
    pub async fn answer(
        &self,
        session: &SessionId,
        id: &str,
        result: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), GatewayError> {
        match ReplyRouter::worker_of(id) {
            Some(worker) if worker == self.relay.worker_id() => {
                let delivery = self.relay.deliver(session.as_str(), id, result, error);
                tracing::debug!(?delivery, "answer to a server request");
            }
            Some(worker) => {
                let parse = |raw: &str| serde_json::from_str::<Value>(raw).ok();
                let payload = serde_json::json!({
                    "session": session.as_str(),
                    "id": id,
                    "result": result.and_then(parse),
                    "error": error.and_then(parse),
                });
                let channel = self.keys.channel(&format!("worker:{worker}"));
                self.store.publish(&channel, &payload.to_string()).await?;
            }
            None => {}
        }
        Ok(())
    }

    /// A session ended: its warm children go on this worker now, and on every other one
    /// through the store's pub/sub (the tag is a hash, never the session id).
    pub(super) async fn forget_everywhere(&self, session: &SessionId) {
        self.manager.forget_session(session.as_str());
        let tag = McpManager::session_tag(session.as_str());
        if let Err(e) = self.store.publish(&self.keys.channel("forget"), &tag).await {
            tracing::warn!(error = %e, "could not tell the other workers that a session ended");
        }
    }

    /// Handles a message published to this worker: a routed answer, a cancellation, or a
    /// session that ended (its warm children go).
    pub fn on_published(&self, channel: &str, payload: &str) {
        if channel.ends_with("channel:forget") {
            self.manager.forget_tag(payload);
            return;
        }
        // JSON, unknown fields ignored; a message this version cannot read is dropped, counted.
        let Ok(message) = serde_json::from_str::<Value>(payload) else {
            let reason = UnreadableReason::Malformed;
            RecordUnreadable { kind: StoredKind::Message, reason, session: None }.emit(&self.metrics);
            return;
        };
        let session = message.get("session").and_then(|s| s.as_str()).unwrap_or("");
        if channel.ends_with("channel:cancel") {
            if let Some(request) = message.get("request").and_then(|r| r.as_str()) {
                self.inflight.cancel(session, request);
            }
            return;
        }
        let Some(id) = message.get("id").and_then(|i| i.as_str()) else { return };
        let result = message.get("result").filter(|r| !r.is_null()).map(|r| r.to_string());
        let error = message.get("error").filter(|e| !e.is_null()).map(|e| e.to_string());
        self.relay.deliver(session, id, result.as_deref(), error.as_deref());
    }

    /// Subscribes to this worker's channel, the cancellation and the ended-sessions channels, and routes what
    /// arrives to this worker's calls until the gateway is dropped.
    pub fn spawn_dispatcher(self: &std::sync::Arc<Self>) {
        let (tx, mut rx) = mpsc::channel::<(String, String)>(DISPATCH_QUEUE);
        let channels = vec![
            self.keys.channel(&format!("worker:{}", self.relay.worker_id())),
            self.keys.channel("cancel"),
            self.keys.channel("forget"),
        ];
        self.store.subscribe(channels, tx);
        let gateway = std::sync::Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some((channel, payload)) = rx.recv().await {
                let Some(gateway) = gateway.upgrade() else { break };
                if gateway.on_modern_published(&payload) {
                    continue;
                }
                gateway.on_published(&channel, &payload);
            }
        });
    }
}

/// The client's capabilities recorded at `initialize`, raw. Capabilities past the bounds of
/// `initialize` (kept by an older release) are not replayed.
fn client_capabilities(record: &SessionRecord) -> Option<Box<RawValue>> {
    let caps = record.client.get("capabilities")?;
    let raw = caps.to_string();
    if raw.len() > MAX_CAPABILITIES_BYTES || json_depth(caps) > MAX_CAPABILITIES_DEPTH {
        return None;
    }
    RawValue::from_string(raw).ok()
}

/// Requests in flight on this worker, by session and client request id, for cancellation.
#[derive(Default)]
pub struct Inflight(Mutex<HashMap<(String, String), CancellationToken>>);

impl Inflight {
    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), CancellationToken>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a request; its token is cancelled by [`Inflight::cancel`].
    pub fn register(&self, session: &str, request: &str) -> CancellationToken {
        let token = CancellationToken::new();
        self.lock().insert((session.to_string(), request.to_string()), token.clone());
        token
    }

    /// Forgets a finished request.
    pub fn remove(&self, session: &str, request: &str) {
        self.lock().remove(&(session.to_string(), request.to_string()));
    }

    /// Cancels a request if it runs here; true if it did.
    pub fn cancel(&self, session: &str, request: &str) -> bool {
        match self.lock().remove(&(session.to_string(), request.to_string())) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }
}
