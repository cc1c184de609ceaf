//! The host-facing dispatcher: reads stdin line by line, answers what the bridge
//! answers itself (`initialize` in legacy mode, `ping`, errors for bad lines and
//! unknown methods), and runs every request that needs the gateway in its own
//! task, so a slow tool call never delays a `ping` or another call.
//!
//! In-flight requests are registered by id with a cancellation token: a
//! `notifications/cancelled` drops the request's future (which aborts its HTTP
//! call) and no response is sent. On stdin EOF the reader stops, in-flight
//! requests get a bounded time to finish, the rest are cancelled, the gateway
//! session is ended best-effort, and stdout is flushed.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::error::{BridgeError, GatewayError};
use super::jsonrpc::{self, Message, Outcome};
use super::legacy::LegacyGateway;
use super::mcp::{McpGateway, local_initialize_result};
use super::stdio::{Line, LineReader, Outbox, spawn_writer};
use super::{BridgeOptions, Transport};

/// Internal knobs with production defaults; tests shorten them.
#[derive(Debug, Clone)]
pub(crate) struct Tuning {
    /// Interval of the keep-alive `notifications/progress` sent while a legacy
    /// `/call-tool` is outstanding (only when the host gave a progressToken):
    /// well under the 60 s request timeout hosts commonly use.
    pub(crate) keepalive: Duration,
    /// Longest accepted stdin line; longer ones are answered with an error.
    pub(crate) max_line: usize,
    /// How long in-flight requests may run after stdin EOF; `None`: the
    /// per-call timeout (each call is bounded by it anyway).
    pub(crate) drain: Option<Duration>,
    /// Bound on ending the gateway session and flushing stdout at exit.
    pub(crate) close: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            keepalive: Duration::from_secs(5),
            max_line: 16 * 1024 * 1024,
            drain: None,
            close: Duration::from_secs(1),
        }
    }
}

enum Gateway {
    Legacy(LegacyGateway),
    Mcp(McpGateway),
}

struct Host {
    gateway: Gateway,
    outbox: Outbox,
    tuning: Tuning,
    tracker: TaskTracker,
    inflight: std::sync::Mutex<HashMap<String, (u64, CancellationToken)>>,
    next_task: AtomicU64,
}

/// Runs the bridge; see [`super::run`].
pub(crate) async fn serve(
    opts: BridgeOptions,
    tuning: Tuning,
    stdin: impl AsyncRead + Unpin + Send + 'static,
    stdout: impl AsyncWrite + Unpin + Send + 'static,
) -> Result<(), BridgeError> {
    let gateway = build_gateway(&opts)?;
    let drain = tuning.drain.unwrap_or(opts.request_timeout);
    let close = tuning.close;
    let (outbox, writer) = spawn_writer(stdout);
    let host = Arc::new(Host {
        gateway,
        outbox,
        tracker: TaskTracker::new(),
        inflight: std::sync::Mutex::new(HashMap::new()),
        next_task: AtomicU64::new(0),
        tuning: tuning.clone(),
    });
    tracing::debug!(options = ?opts, "bridge ready");

    let mut reader = LineReader::new(stdin, tuning.max_line);
    let read_outcome = loop {
        match reader.next_line().await {
            Ok(Line::Eof) => break Ok(()),
            Ok(Line::TooLong) => {
                let message = format!("Invalid Request: message longer than {} bytes", tuning.max_line);
                host.outbox.send(jsonrpc::error_line(None, jsonrpc::INVALID_REQUEST, &message)).await;
            }
            Ok(Line::Message(line)) => host.on_line(line).await,
            Err(e) => break Err(BridgeError::Stdin(e)),
        }
    };
    tracing::debug!("stdin closed; draining in-flight requests");

    host.tracker.close();
    if tokio::time::timeout(drain, host.tracker.wait()).await.is_err() {
        let tokens: Vec<CancellationToken> =
            host.inflight.lock().map(|mut m| m.drain().map(|(_, (_, t))| t).collect()).unwrap_or_default();
        tracing::warn!(count = tokens.len(), "abandoning requests still running at exit");
        for token in tokens {
            token.cancel();
        }
        if tokio::time::timeout(close, host.tracker.wait()).await.is_err() {
            tracing::warn!("some tasks did not stop in time");
        }
    }
    match &host.gateway {
        Gateway::Legacy(g) => g.close(close).await,
        Gateway::Mcp(g) => g.close(close).await,
    }
    drop(host);
    let written = match tokio::time::timeout(close, writer).await {
        Ok(Ok(result)) => result.map_err(BridgeError::Stdout),
        Ok(Err(join)) => Err(BridgeError::Stdout(std::io::Error::other(join))),
        Err(_) => Err(BridgeError::Stdout(std::io::Error::other("timed out flushing stdout at exit"))),
    };
    read_outcome?;
    written
}

fn build_gateway(opts: &BridgeOptions) -> Result<Gateway, BridgeError> {
    let url = opts.url.trim();
    let invalid = |reason| BridgeError::InvalidUrl { url: opts.url.clone(), reason };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| invalid("must start with http:// or https://"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(invalid("has no host"));
    }
    if url.contains(['?', '#']) {
        return Err(invalid("must not have a query or fragment"));
    }
    let http = reqwest::Client::builder()
        .connect_timeout(opts.request_timeout.min(Duration::from_secs(10)))
        .build()
        .map_err(BridgeError::HttpClient)?;
    Ok(match opts.transport {
        Transport::Legacy => {
            Gateway::Legacy(LegacyGateway::new(http, url, opts.credentials.clone(), opts.request_timeout))
        }
        Transport::Mcp => Gateway::Mcp(McpGateway::new(http, url, &opts.credentials, opts.request_timeout)),
    })
}

#[derive(Deserialize)]
struct InitializeParams {
    #[serde(rename = "protocolVersion", default)]
    protocol_version: Option<String>,
    #[serde(rename = "clientInfo", default)]
    client_info: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct CallToolParams<'a> {
    #[serde(default)]
    name: Option<String>,
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
    #[serde(rename = "_meta", default)]
    meta: Option<RequestMeta>,
}

#[derive(Deserialize)]
struct RequestMeta {
    #[serde(rename = "progressToken", default)]
    progress_token: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct CancelledParams {
    #[serde(rename = "requestId")]
    request_id: Box<RawValue>,
}

impl Host {
    async fn on_line(self: &Arc<Self>, line: Vec<u8>) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        match jsonrpc::parse(&line) {
            Err(failure) => {
                tracing::debug!(?failure, "bad line from the host");
                self.outbox.send(failure.to_error_line()).await;
            }
            Ok(Message::Request { id, method, params }) => {
                self.on_request(id, method, params, line).await;
            }
            Ok(Message::Notification { method, params }) => {
                self.on_notification(&method, params.as_deref(), line);
            }
            Ok(Message::Response { id, outcome }) => self.on_response(id, outcome),
        }
    }

    async fn on_request(
        self: &Arc<Self>,
        id: Box<RawValue>,
        method: String,
        params: Option<Box<RawValue>>,
        line: Vec<u8>,
    ) {
        tracing::debug!(method, id = id.get(), "request from the host");
        match (method.as_str(), &self.gateway) {
            ("ping", _) => self.outbox.send(jsonrpc::result_line(&id, "{}")).await,
            ("initialize", Gateway::Legacy(gateway)) => {
                let params =
                    params.as_deref().and_then(|p| serde_json::from_str::<InitializeParams>(p.get()).ok());
                if let Some(info) = params.as_ref().and_then(|p| p.client_info.as_ref()) {
                    gateway.set_client_info(info);
                }
                let requested = params.as_ref().and_then(|p| p.protocol_version.as_deref());
                let result = local_initialize_result(requested, false);
                self.outbox.send(jsonrpc::result_line(&id, &result.to_string())).await;
            }
            ("initialize", Gateway::Mcp(gateway)) => {
                // Take the session lock now, in reading order, so that every
                // later request waits for this initialize to finish.
                let guard = gateway.begin_initialize(params.as_deref()).await;
                let host = Arc::clone(self);
                self.spawn_request(jsonrpc::id_key(&id), async move {
                    let Gateway::Mcp(gateway) = &host.gateway else {
                        return;
                    };
                    let answer = gateway.initialize(guard, &id, &line, &host.outbox).await;
                    host.outbox.send(answer).await;
                });
            }
            ("tools/list", Gateway::Legacy(_)) => {
                let host = Arc::clone(self);
                self.spawn_request(jsonrpc::id_key(&id), async move {
                    let Gateway::Legacy(gateway) = &host.gateway else {
                        return;
                    };
                    let answer = match gateway.list_tools().await {
                        Ok(body) => jsonrpc::result_line(&id, &String::from_utf8_lossy(&body)),
                        Err(e) => e.to_error_line(&id),
                    };
                    host.outbox.send(answer).await;
                });
            }
            ("tools/call", Gateway::Legacy(_)) => {
                let host = Arc::clone(self);
                self.spawn_request(jsonrpc::id_key(&id), async move {
                    let answer = host.legacy_call(&id, params.as_deref()).await;
                    host.outbox.send(answer).await;
                });
            }
            (_, Gateway::Legacy(_)) => {
                let message = format!("Method not found: {method}");
                self.outbox.send(jsonrpc::error_line(Some(&id), jsonrpc::METHOD_NOT_FOUND, &message)).await;
            }
            (_, Gateway::Mcp(_)) => {
                let host = Arc::clone(self);
                self.spawn_request(jsonrpc::id_key(&id), async move {
                    let Gateway::Mcp(gateway) = &host.gateway else {
                        return;
                    };
                    let answer = match gateway.forward(&line, &id, &host.outbox).await {
                        Ok(outcome) => jsonrpc::response_line(&id, &outcome),
                        Err(e) if method == "tools/call" && !e.is_protocol_error() => {
                            e.to_tool_error_line(&id)
                        }
                        Err(e) => e.to_error_line(&id),
                    };
                    host.outbox.send(answer).await;
                });
            }
        }
    }

    /// Legacy `tools/call`: `/call-tool`, with keep-alive progress while it runs.
    async fn legacy_call(&self, id: &RawValue, params: Option<&RawValue>) -> String {
        let Gateway::Legacy(gateway) = &self.gateway else {
            return jsonrpc::error_line(Some(id), jsonrpc::INTERNAL_ERROR, "wrong transport");
        };
        let parsed = params.map(|p| serde_json::from_str::<CallToolParams<'_>>(p.get()));
        let params = match parsed {
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                return jsonrpc::error_line(
                    Some(id),
                    jsonrpc::INVALID_PARAMS,
                    &format!("Invalid params: {e}"),
                );
            }
            None => {
                return jsonrpc::error_line(Some(id), jsonrpc::INVALID_PARAMS, "Invalid params: missing");
            }
        };
        let Some(name) = params.name.as_deref() else {
            return jsonrpc::error_line(
                Some(id),
                jsonrpc::INVALID_PARAMS,
                "Invalid params: missing tool name",
            );
        };
        if params.arguments.is_some_and(|a| !a.get().trim_start().starts_with(['{', 'n'])) {
            return jsonrpc::error_line(
                Some(id),
                jsonrpc::INVALID_PARAMS,
                "Invalid params: arguments must be an object",
            );
        }
        let arguments = params.arguments.filter(|a| a.get().trim() != "null");
        let token = params.meta.and_then(|m| m.progress_token);
        let call = gateway.call_tool(name, arguments);
        let outcome = match token {
            Some(token) => self.with_keepalive(&token, call).await,
            None => call.await,
        };
        match outcome {
            Ok(result) => jsonrpc::result_line(id, result.get()),
            Err(e) if e.is_protocol_error() => e.to_error_line(id),
            Err(e) => {
                tracing::info!(tool = name, error = %e.user_message(), "tool call failed");
                e.to_tool_error_line(id)
            }
        }
    }

    /// Awaits `call`, emitting `notifications/progress` for `token` every
    /// `keepalive` so hosts that reset their timeout on progress keep waiting.
    async fn with_keepalive<T>(
        &self,
        token: &RawValue,
        call: impl Future<Output = Result<T, GatewayError>>,
    ) -> Result<T, GatewayError> {
        let mut call = std::pin::pin!(call);
        let period = self.tuning.keepalive;
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let mut progress = 0u64;
        loop {
            tokio::select! {
                outcome = &mut call => return outcome,
                _ = ticks.tick() => {
                    progress += 1;
                    let params = format!(
                        r#"{{"progressToken":{},"progress":{progress},"message":"Waiting for the switchboard gateway"}}"#,
                        token.get()
                    );
                    if let Ok(params) = RawValue::from_string(params) {
                        self.outbox
                            .send(jsonrpc::request_line(None, "notifications/progress", Some(&params)))
                            .await;
                    }
                }
            }
        }
    }

    fn on_notification(self: &Arc<Self>, method: &str, params: Option<&RawValue>, line: Vec<u8>) {
        if method == "notifications/cancelled" {
            let request_id = params
                .and_then(|p| serde_json::from_str::<CancelledParams>(p.get()).ok())
                .map(|p| jsonrpc::id_key(&p.request_id));
            if let Some(key) = request_id {
                let entry = self.inflight.lock().ok().and_then(|mut m| m.remove(&key));
                match entry {
                    Some((_, token)) => {
                        tracing::debug!(request = key, "host cancelled a request");
                        token.cancel();
                    }
                    None => tracing::debug!(request = key, "cancellation for no in-flight request"),
                }
            }
        }
        match &self.gateway {
            // `notifications/initialized` is sent by the bridge itself right
            // after the gateway's initialize; everything else is relayed.
            Gateway::Mcp(_) if method != "notifications/initialized" => {
                let host = Arc::clone(self);
                self.tracker.spawn(async move {
                    if let Gateway::Mcp(gateway) = &host.gateway {
                        gateway.notify(&line).await;
                    }
                });
            }
            _ => tracing::trace!(method, "notification handled locally"),
        }
    }

    fn on_response(self: &Arc<Self>, id: Box<RawValue>, outcome: Outcome) {
        match &self.gateway {
            Gateway::Mcp(_) => {
                let host = Arc::clone(self);
                self.tracker.spawn(async move {
                    if let Gateway::Mcp(gateway) = &host.gateway
                        && !gateway.relay_response(&id, &outcome).await
                    {
                        tracing::debug!(id = id.get(), "ignoring an unsolicited response");
                    }
                });
            }
            Gateway::Legacy(_) => {
                tracing::debug!(id = id.get(), "ignoring an unsolicited response")
            }
        }
    }

    /// Runs a request's work in its own task, cancellable by request id.
    fn spawn_request(self: &Arc<Self>, key: String, work: impl Future<Output = ()> + Send + 'static) {
        let seq = self.next_task.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        if let Ok(mut inflight) = self.inflight.lock() {
            inflight.insert(key.clone(), (seq, token.clone()));
        }
        let host = Arc::clone(self);
        self.tracker.spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = work => {}
            }
            if let Ok(mut inflight) = host.inflight.lock()
                && inflight.get(&key).is_some_and(|(s, _)| *s == seq)
            {
                inflight.remove(&key);
            }
        });
    }
}
