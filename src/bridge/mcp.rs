//! An MCP Streamable HTTP client (legacy era, protocol 2025-11-25) for the `mcp`
//! transport: every host message is a POST to `{url}/mcp`; answers come back as
//! one JSON message or as an SSE stream that may carry notifications and
//! server→client requests before the response. A stream that ends before the
//! response is resumed with `GET` + `Last-Event-ID` after the server's `retry`.
//!
//! Session: `Mcp-Session-Id` and `MCP-Protocol-Version` from the gateway's
//! `initialize` are sent on every later request; a 404 on a request carrying the
//! session id means the session is gone and the call never ran, so the bridge
//! initializes again (replaying the host's `initialize` parameters) and retries
//! once, as [`super::session`] says. It does not open the optional standalone GET
//! stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::OwnedMutexGuard;

use super::error::{GatewayError, from_reqwest};
use super::jsonrpc::{self, Message, Outcome};
use super::session::{Failure, GatewaySession, Slot};
use super::stdio::Outbox;
use crate::protocol::sse::SseDecoder;
use crate::protocol::{
    ACCEPT_JSON_AND_SSE, EVENT_STREAM, LAST_EVENT_ID_HEADER, LATEST_VERSION, SESSION_HEADER, STDIO_VERSIONS,
    VERSION_HEADER, negotiate,
};

// The modern era (2026-07-28): a child module, so it shares this client's parts.
#[path = "modern.rs"]
mod modern;

/// Reconnection delay when the server sent no `retry` field.
const DEFAULT_RETRY: Duration = Duration::from_secs(1);
/// Consecutive resumptions without a single message before giving up.
const MAX_RESUMES: u32 = 5;

/// The gateway session as negotiated by `initialize`.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    /// `None` for a stateless server that issues no session id.
    session_id: Option<String>,
    /// The negotiated version, sent as `MCP-Protocol-Version`.
    protocol_version: Option<String>,
}

/// A server→client request relayed to the host under a bridge-chosen id.
struct PendingServerRequest {
    upstream_id: Box<RawValue>,
    upstream: Option<Upstream>,
}

pub(crate) struct McpGateway {
    http: reqwest::Client,
    endpoint: String,
    bearer: Option<String>,
    no_credentials: bool,
    timeout: Duration,
    /// The gateway session; its lock is held across `initialize`.
    session: GatewaySession<Upstream>,
    /// The host's `initialize` params, replayed when the bridge (re)initializes.
    host_init: std::sync::Mutex<Option<Box<RawValue>>>,
    next_id: AtomicU64,
    pending: std::sync::Mutex<HashMap<String, PendingServerRequest>>,
    /// The protocol era spoken to the gateway, and the modern era's state.
    modern: modern::State,
    /// The OAuth client (see [`super::oauth`]): its token goes in every request, and
    /// a 401/403 challenge is answered there before the request is sent again.
    oauth: Option<std::sync::Arc<super::oauth::OAuth>>,
}

#[derive(Deserialize)]
struct InitializeResultHead {
    #[serde(rename = "protocolVersion", default)]
    protocol_version: Option<String>,
}

#[derive(Deserialize)]
struct InitializeParamsHead {
    #[serde(rename = "protocolVersion", default)]
    protocol_version: Option<String>,
}

impl McpGateway {
    pub(crate) fn new(
        http: reqwest::Client,
        url: &str,
        credentials: &serde_json::Value,
        timeout: Duration,
        protocol: super::Protocol,
    ) -> Self {
        let base = url.trim_end_matches('/');
        let endpoint = if base.ends_with("/mcp") { base.to_owned() } else { format!("{base}/mcp") };
        Self {
            http,
            endpoint,
            bearer: credentials.get("token").and_then(|t| t.as_str()).map(str::to_owned),
            no_credentials: credentials.as_object().is_none_or(|o| o.is_empty()),
            timeout,
            session: GatewaySession::new(),
            host_init: std::sync::Mutex::new(None),
            next_id: AtomicU64::new(1),
            pending: std::sync::Mutex::new(HashMap::new()),
            modern: modern::State::new(protocol),
            oauth: None,
        }
    }

    /// Uses `oauth` for the gateway's authorization (`None`: static token or none).
    pub(crate) fn with_oauth(mut self, oauth: Option<std::sync::Arc<super::oauth::OAuth>>) -> Self {
        self.oauth = oauth;
        self
    }

    /// First half of the host's `initialize`, done inline by the reader so that
    /// every later message queues behind it: stores the params and takes the lock.
    pub(crate) async fn begin_initialize(
        &self,
        params: Option<&RawValue>,
    ) -> OwnedMutexGuard<Slot<Upstream>> {
        if let (Some(params), Ok(mut slot)) = (params, self.host_init.lock()) {
            *slot = Some(params.to_owned());
        }
        self.session.lock_owned().await
    }

    /// Second half: relays the host's `initialize` line to the gateway and returns
    /// the line to answer the host with. If the gateway cannot be used, answers
    /// locally and leaves the session to be opened on the next request.
    pub(crate) async fn initialize(
        &self,
        mut slot: OwnedMutexGuard<Slot<Upstream>>,
        id: &RawValue,
        line: &[u8],
        outbox: &Outbox,
    ) -> String {
        slot.take();
        if let Some(answer) = self.modern_initialize(id, outbox).await {
            return answer;
        }
        let expect = jsonrpc::id_key(id);
        match self.exchange(line.to_vec(), Some(&expect), None, outbox).await {
            Ok((session_id, Some(Outcome::Result(result)))) => {
                let upstream = self.established(session_id, &result).await;
                slot.establish(upstream.clone());
                tracing::info!(
                    protocol_version = upstream.protocol_version.as_deref().unwrap_or("?"),
                    stateful = upstream.session_id.is_some(),
                    "gateway initialized"
                );
                jsonrpc::result_line(id, result.get())
            }
            Ok((_, Some(Outcome::Error(error)))) => jsonrpc::raw_error_line(Some(id), &error),
            Ok((_, None)) => self.local_initialize(id, "the gateway did not answer initialize"),
            Err(Failure::SessionGone(message))
            | Err(Failure::Other(GatewayError::SessionLost { message })) => {
                self.local_initialize(id, &message)
            }
            Err(Failure::Other(e)) => self.local_initialize(id, &e.user_message()),
        }
    }

    fn local_initialize(&self, id: &RawValue, why: &str) -> String {
        tracing::warn!(
            reason = why,
            "answering initialize locally; the gateway will be initialized on first use"
        );
        let requested = self
            .host_init
            .lock()
            .ok()
            .and_then(|p| p.as_ref().map(|p| p.get().to_owned()))
            .and_then(|p| serde_json::from_str::<InitializeParamsHead>(&p).ok())
            .and_then(|p| p.protocol_version);
        let result = local_initialize_result(requested.as_deref(), true);
        jsonrpc::result_line(id, &result.to_string())
    }

    /// The session a successful `initialize` opened; sends `notifications/initialized`
    /// on it (the caller holds the session lock and records the session).
    async fn established(&self, session_id: Option<String>, result: &RawValue) -> Upstream {
        let protocol_version =
            serde_json::from_str::<InitializeResultHead>(result.get()).ok().and_then(|r| r.protocol_version);
        let upstream = Upstream { session_id, protocol_version };
        let note = jsonrpc::request_line(None, "notifications/initialized", None);
        let sent = self.exchange(note.into_bytes(), None, Some(&upstream), &Outbox::closed()).await;
        match sent {
            Ok(_) => {}
            Err(Failure::SessionGone(message)) => {
                tracing::warn!(message, "notifications/initialized answered 404");
            }
            Err(Failure::Other(e)) => {
                tracing::warn!(error = %e.user_message(), "notifications/initialized was not accepted");
            }
        }
        upstream
    }

    /// Forwards one host request line; returns the gateway's outcome for it.
    pub(crate) async fn forward(
        &self,
        line: &[u8],
        id: &RawValue,
        outbox: &Outbox,
    ) -> Result<Outcome, GatewayError> {
        if let Some(outcome) = self.modern_forward(line, outbox).await {
            return outcome;
        }
        let expect = jsonrpc::id_key(id);
        let expect = expect.as_str();
        let outcome = self
            .session
            .with_renewal(
                || self.open(outbox),
                |upstream: Upstream| async move {
                    let exchanged = self.exchange(line.to_vec(), Some(expect), Some(&upstream), outbox).await;
                    exchanged.map(|(_, outcome)| outcome)
                },
            )
            .await?;
        outcome
            .ok_or_else(|| GatewayError::Protocol("the request was accepted (202) but never answered".into()))
    }

    /// Forwards a host notification (cancellation, roots changes…) if a gateway
    /// session exists; never opens one for a notification.
    pub(crate) async fn notify(&self, line: &[u8]) {
        if self.modern_drops_notifications() {
            return;
        }
        let Some(upstream) = self.session.lock().await.current() else {
            tracing::debug!("no gateway session yet; notification not forwarded");
            return;
        };
        if let Err(Failure::Other(e)) =
            self.exchange(line.to_vec(), None, Some(&upstream), &Outbox::closed()).await
        {
            tracing::debug!(error = %e.user_message(), "notification not delivered");
        }
    }

    /// Delivers the host's answer to a relayed server→client request. Returns
    /// `false` when the id is not one the bridge issued (an unsolicited response).
    pub(crate) async fn relay_response(&self, id: &RawValue, outcome: &Outcome) -> bool {
        if self.modern_answer(id, outcome) {
            return true;
        }
        let pending = self.pending.lock().ok().and_then(|mut p| p.remove(&jsonrpc::id_key(id)));
        let Some(pending) = pending else {
            return false;
        };
        let line = jsonrpc::response_line(&pending.upstream_id, outcome);
        if let Err(Failure::Other(e)) =
            self.exchange(line.into_bytes(), None, pending.upstream.as_ref(), &Outbox::closed()).await
        {
            tracing::warn!(error = %e.user_message(), "could not deliver the host's response to the gateway");
        }
        true
    }

    /// Ends the gateway session (`DELETE`), best effort, bounded by `limit`.
    pub(crate) async fn close(&self, limit: Duration) {
        let current = match tokio::time::timeout(limit, self.session.lock()).await {
            Ok(mut slot) => slot.take(),
            Err(_) => None,
        };
        let Some(upstream) = current.filter(|u| u.session_id.is_some()) else {
            return;
        };
        let request = self.decorate(self.http.delete(&self.endpoint), Some(&upstream)).timeout(limit).send();
        match request.await {
            Ok(r) => tracing::debug!(status = r.status().as_u16(), "gateway session ended"),
            Err(e) => {
                tracing::debug!(error = %e.without_url(), "could not end the gateway session")
            }
        }
    }

    /// The bridge's own `initialize` (lazy open or renewal).
    async fn open(&self, outbox: &Outbox) -> Result<Upstream, GatewayError> {
        let params = self
            .host_init
            .lock()
            .ok()
            .and_then(|p| p.as_ref().map(|p| p.get().to_owned()))
            .unwrap_or_else(|| default_initialize_params().to_string());
        let params = RawValue::from_string(params)
            .map_err(|e| GatewayError::Protocol(format!("initialize params: {e}")))?;
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("\"switchboard-bridge-init-{n}\"");
        let line = jsonrpc::request_line(Some(&id), "initialize", Some(&params));
        let expect =
            jsonrpc::id_key(&RawValue::from_string(id).map_err(|e| GatewayError::Protocol(e.to_string()))?);
        match self.exchange(line.into_bytes(), Some(&expect), None, outbox).await {
            Ok((session_id, Some(Outcome::Result(result)))) => {
                let upstream = self.established(session_id, &result).await;
                tracing::info!(stateful = upstream.session_id.is_some(), "gateway session opened");
                Ok(upstream)
            }
            Ok((_, Some(Outcome::Error(error)))) => {
                Err(GatewayError::Protocol(format!("the gateway refused initialize: {}", error.get())))
            }
            Ok((_, None)) => Err(GatewayError::Protocol("initialize was never answered".into())),
            Err(Failure::SessionGone(message)) => Err(GatewayError::SessionLost { message }),
            Err(Failure::Other(e)) => Err(e),
        }
    }

    fn decorate(
        &self,
        mut request: reqwest::RequestBuilder,
        upstream: Option<&Upstream>,
    ) -> reqwest::RequestBuilder {
        if let Some(token) = &self.bearer {
            request = request.bearer_auth(token);
        } else if let Some(token) = self.oauth.as_ref().and_then(|o| o.access_token()) {
            request = request.bearer_auth(token.expose());
        }
        if let Some(upstream) = upstream {
            if let Some(session_id) = &upstream.session_id {
                request = request.header(SESSION_HEADER, session_id);
            }
            if let Some(version) = &upstream.protocol_version {
                request = request.header(VERSION_HEADER, version);
            }
        }
        request
    }

    /// POSTs one message. With `expect` (the id of a request), waits for the
    /// response with that id, relaying everything that comes before it; without,
    /// expects 202. Returns the `Mcp-Session-Id` the answer carried.
    async fn exchange(
        &self,
        body: Vec<u8>,
        expect: Option<&str>,
        upstream: Option<&Upstream>,
        outbox: &Outbox,
    ) -> Result<(Option<String>, Option<Outcome>), Failure> {
        let body = bytes::Bytes::from(body);
        let post = || {
            self.decorate(self.http.post(&self.endpoint), upstream)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(reqwest::header::ACCEPT, ACCEPT_JSON_AND_SSE)
                .body(body.clone())
        };
        // Without OAuth this is one `send`; with it, 401/403 challenges are answered.
        let response = super::oauth::send_with(self.oauth.as_deref(), || self.send(post())).await?;
        let status = response.status().as_u16();
        let session_id =
            response.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let sent_session = upstream.is_some_and(|u| u.session_id.is_some());
        if !(200..300).contains(&status) {
            let body = self.body(response).await.unwrap_or_default();
            return Err(self.status_failure(status, &body, sent_session));
        }
        let Some(expect) = expect else {
            return Ok((session_id, None));
        };
        if status == 202 {
            return Ok((session_id, None));
        }
        let is_sse = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with(EVENT_STREAM));
        let outcome = if is_sse {
            self.read_stream(response, expect, upstream, outbox).await?
        } else {
            let body = self.body(response).await?;
            self.read_json(&body, expect, upstream, outbox).await?
        };
        Ok((session_id, Some(outcome)))
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, GatewayError> {
        match tokio::time::timeout(self.timeout, request.send()).await {
            Err(_) => Err(GatewayError::TimedOut { after: self.timeout }),
            Ok(Err(e)) => Err(from_reqwest(&e, &self.endpoint, self.timeout)),
            Ok(Ok(response)) => Ok(response),
        }
    }

    async fn body(&self, response: reqwest::Response) -> Result<bytes::Bytes, GatewayError> {
        match tokio::time::timeout(self.timeout, response.bytes()).await {
            Err(_) => Err(GatewayError::TimedOut { after: self.timeout }),
            Ok(Err(e)) => Err(from_reqwest(&e, &self.endpoint, self.timeout)),
            Ok(Ok(body)) => Ok(body),
        }
    }

    fn status_failure(&self, status: u16, body: &[u8], sent_session: bool) -> Failure {
        #[derive(Deserialize)]
        struct ErrorEnvelope {
            error: Box<RawValue>,
        }
        #[derive(Deserialize)]
        struct ErrorFields {
            #[serde(default)]
            message: String,
        }
        let rpc_error = serde_json::from_slice::<ErrorEnvelope>(body).ok().map(|e| e.error);
        let message = rpc_error
            .as_ref()
            .and_then(|e| serde_json::from_str::<ErrorFields>(e.get()).ok())
            .map(|f| f.message)
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_owned());
        match status {
            404 if sent_session => Failure::SessionGone(message),
            401 | 403 => {
                Failure::Other(GatewayError::Refused { message, no_credentials: self.no_credentials })
            }
            400..=499 => match rpc_error {
                Some(error) if status != 429 => Failure::Other(GatewayError::JsonRpc(error)),
                _ if status == 429 => Failure::Other(GatewayError::Status {
                    status,
                    code: String::new(),
                    message,
                    retry_after: None,
                }),
                _ => Failure::Other(GatewayError::BadRequest { status, message }),
            },
            _ => Failure::Other(GatewayError::Status {
                status,
                code: String::new(),
                message,
                retry_after: None,
            }),
        }
    }

    /// A JSON answer: one message, or (2025-03-26 servers) an array of them.
    async fn read_json(
        &self,
        body: &[u8],
        expect: &str,
        upstream: Option<&Upstream>,
        outbox: &Outbox,
    ) -> Result<Outcome, GatewayError> {
        let text =
            std::str::from_utf8(body).map_err(|_| GatewayError::Protocol("answer is not UTF-8".into()))?;
        if text.trim_start().starts_with('[') {
            let items: Vec<Box<RawValue>> =
                serde_json::from_str(text).map_err(|e| GatewayError::Protocol(format!("answer: {e}")))?;
            let mut found = None;
            for item in items {
                if let Some(outcome) = self.on_message(item.get().as_bytes(), expect, upstream, outbox).await
                {
                    found = Some(outcome);
                }
            }
            return found
                .ok_or_else(|| GatewayError::Protocol("the answer did not contain the response".into()));
        }
        self.on_message(body, expect, upstream, outbox)
            .await
            .ok_or_else(|| GatewayError::Protocol("the answer did not contain the response".into()))
    }

    /// An SSE answer: relay messages until the response; resume on early end.
    async fn read_stream(
        &self,
        mut response: reqwest::Response,
        expect: &str,
        upstream: Option<&Upstream>,
        outbox: &Outbox,
    ) -> Result<Outcome, GatewayError> {
        let mut parser = SseDecoder::new();
        let mut resumes = 0u32;
        loop {
            loop {
                let chunk = match tokio::time::timeout(self.timeout, response.chunk()).await {
                    Err(_) => {
                        return Err(GatewayError::TimedOut { after: self.timeout });
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e.without_url(), "SSE stream broke");
                        break;
                    }
                    Ok(Ok(None)) => break,
                    Ok(Ok(Some(chunk))) => chunk,
                };
                let events = parser.push(&chunk).map_err(|e| GatewayError::Protocol(e.to_string()))?;
                for event in events {
                    if event.data.trim().is_empty() {
                        continue;
                    }
                    resumes = 0;
                    if let Some(outcome) =
                        self.on_message(event.data.as_bytes(), expect, upstream, outbox).await
                    {
                        return Ok(outcome);
                    }
                }
            }
            let Some(last_event_id) = parser.last_event_id().map(str::to_owned) else {
                return Err(GatewayError::Protocol(
                    "the SSE stream ended before the response and cannot be resumed (no event id)".into(),
                ));
            };
            resumes += 1;
            if resumes > MAX_RESUMES {
                return Err(GatewayError::Protocol(format!(
                    "gave up resuming the SSE stream after {MAX_RESUMES} attempts"
                )));
            }
            let delay = parser.retry().unwrap_or(DEFAULT_RETRY);
            tracing::debug!(?delay, last_event_id, "SSE stream ended early; resuming");
            tokio::time::sleep(delay).await;
            let request = self
                .decorate(self.http.get(&self.endpoint), upstream)
                .header(reqwest::header::ACCEPT, EVENT_STREAM)
                .header(LAST_EVENT_ID_HEADER, &last_event_id);
            response = self.send(request).await?;
            let status = response.status().as_u16();
            let is_sse = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim_start().starts_with(EVENT_STREAM));
            if status != 200 || !is_sse {
                // Not retried as a whole: the request may already have run.
                return Err(GatewayError::Protocol(format!(
                    "resuming the SSE stream failed (HTTP {status})"
                )));
            }
            parser = parser.resume();
        }
    }

    /// Handles one message from the gateway: returns the outcome if it is the
    /// awaited response; relays notifications and server→client requests.
    async fn on_message(
        &self,
        raw: &[u8],
        expect: &str,
        upstream: Option<&Upstream>,
        outbox: &Outbox,
    ) -> Option<Outcome> {
        match jsonrpc::parse(raw) {
            Ok(Message::Response { id, outcome }) => {
                if jsonrpc::id_key(&id) == expect {
                    return Some(outcome);
                }
                tracing::debug!(id = id.get(), "ignoring a gateway response for another id");
            }
            Ok(Message::Notification { .. }) => {
                let text = String::from_utf8_lossy(raw);
                outbox.send(jsonrpc::one_line(text.trim()).into_owned()).await;
            }
            Ok(Message::Request { id, method, params }) => {
                let n = self.next_id.fetch_add(1, Ordering::Relaxed);
                let bridge_id = format!("\"switchboard-bridge-{n}\"");
                if let Ok(mut pending) = self.pending.lock() {
                    // A host that never answers must not grow this without bound.
                    if pending.len() >= 1024 {
                        pending.clear();
                    }
                    pending.insert(
                        bridge_id.clone(),
                        PendingServerRequest { upstream_id: id, upstream: upstream.cloned() },
                    );
                }
                outbox.send(jsonrpc::request_line(Some(&bridge_id), &method, params.as_deref())).await;
            }
            Err(e) => tracing::warn!(error = ?e, "ignoring an unreadable message from the gateway"),
        }
        None
    }
}

/// The `initialize` result the bridge gives when it answers by itself.
pub(crate) fn local_initialize_result(requested: Option<&str>, all_capabilities: bool) -> serde_json::Value {
    let version = negotiate(requested, STDIO_VERSIONS);
    let capabilities = if all_capabilities {
        serde_json::json!({"tools": {}, "resources": {}, "prompts": {}})
    } else {
        serde_json::json!({"tools": {"listChanged": false}})
    };
    serde_json::json!({
        "protocolVersion": version,
        "capabilities": capabilities,
        "serverInfo": {"name": "switchboard-bridge", "version": env!("CARGO_PKG_VERSION")},
    })
}

fn default_initialize_params() -> serde_json::Value {
    serde_json::json!({
        "protocolVersion": LATEST_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "switchboard-bridge", "version": env!("CARGO_PKG_VERSION")},
    })
}
