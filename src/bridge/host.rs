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
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::error::{BridgeError, GatewayError};
use super::jsonrpc::{self, Message, Outcome};
use super::legacy::LegacyGateway;
use super::mcp::{McpGateway, local_initialize_result};
use super::stdio::{Outbox, spawn_writer};
use super::{BridgeOptions, Transport};
use crate::protocol::jsonrpc::code;
use crate::protocol::lines::{Frame, read_message_async};

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

/// The host side of one transport: what the bridge does with each kind of host
/// message. One implementation per gateway client, so each handler works on its own
/// client type.
trait GatewayClient: Sized + Send + Sync + 'static {
    /// A host request other than `ping` (answered by the dispatcher for both).
    fn on_request(host: &Arc<Host<Self>>, request: HostRequest) -> impl Future<Output = ()> + Send;

    /// A host notification (cancellations are handled by the dispatcher first).
    fn on_notification(host: &Arc<Host<Self>>, method: &str, line: Vec<u8>);

    /// A host response (to a server→client request the bridge relayed, if any).
    fn on_response(host: &Arc<Host<Self>>, id: Box<RawValue>, outcome: Outcome);

    /// Ends the gateway session, best effort, bounded by `limit`.
    fn close(&self, limit: Duration) -> impl Future<Output = ()> + Send;
}

/// A request from the host, as read.
struct HostRequest {
    id: Box<RawValue>,
    method: String,
    params: Option<Box<RawValue>>,
    /// The whole line, forwarded byte for byte in MCP mode.
    line: Vec<u8>,
}

/// The dispatcher's state, shared by the reader and every request task.
struct Host<G> {
    /// The gateway client of the transport in use.
    gateway: G,
    /// Where answers go (the one stdout writer).
    outbox: Outbox,
    /// Keep-alive period and bounds.
    tuning: Tuning,
    /// Every spawned task, so EOF can wait for them (bounded).
    tracker: TaskTracker,
    /// In-flight requests by id key: a task number (ids may be reused) and the token
    /// that cancels the request.
    inflight: std::sync::Mutex<HashMap<String, (u64, CancellationToken)>>,
    /// Numbers the tasks.
    next_task: AtomicU64,
}

/// Runs the bridge; see [`super::run`].
pub(crate) async fn serve(
    opts: BridgeOptions,
    tuning: Tuning,
    stdin: impl AsyncRead + Unpin + Send + 'static,
    stdout: impl AsyncWrite + Unpin + Send + 'static,
) -> Result<(), BridgeError> {
    let url = checked_url(&opts)?;
    let http = reqwest::Client::builder()
        .connect_timeout(opts.request_timeout.min(Duration::from_secs(10)))
        .build()
        .map_err(BridgeError::HttpClient)?;
    tracing::debug!(options = ?opts, "bridge ready");
    match opts.transport {
        Transport::Legacy => {
            let gateway = LegacyGateway::new(http, url, opts.credentials.clone(), opts.request_timeout);
            run_host(gateway, &opts, tuning, stdin, stdout).await
        }
        Transport::Mcp => {
            let oauth = super::oauth::for_bridge(&opts, &http);
            let gateway = McpGateway::new(http, url, &opts.credentials, opts.request_timeout, opts.protocol)
                .with_oauth(oauth);
            run_host(gateway, &opts, tuning, stdin, stdout).await
        }
    }
}

/// Reads stdin until EOF, then drains, closes the session and flushes stdout.
async fn run_host<G: GatewayClient>(
    gateway: G,
    opts: &BridgeOptions,
    tuning: Tuning,
    stdin: impl AsyncRead + Unpin + Send + 'static,
    stdout: impl AsyncWrite + Unpin + Send + 'static,
) -> Result<(), BridgeError> {
    let drain = tuning.drain.unwrap_or(opts.request_timeout);
    let close = tuning.close;
    let max_line = tuning.max_line;
    let (outbox, writer) = spawn_writer(stdout);
    let host = Arc::new(Host {
        gateway,
        outbox,
        tracker: TaskTracker::new(),
        inflight: std::sync::Mutex::new(HashMap::new()),
        next_task: AtomicU64::new(0),
        tuning,
    });

    let mut stdin = BufReader::with_capacity(64 * 1024, stdin);
    let mut line = Vec::new();
    let read_outcome = loop {
        match read_message_async(&mut stdin, &mut line, max_line).await {
            Ok(Frame::End) => break Ok(()),
            Ok(Frame::TooLong) => {
                let message = format!("Invalid Request: message longer than {max_line} bytes");
                host.outbox.send(jsonrpc::error_line(None, code::INVALID_REQUEST, &message)).await;
            }
            Ok(Frame::Message) => host.on_line(std::mem::take(&mut line)).await,
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
    host.gateway.close(close).await;
    drop(host);
    let written = match tokio::time::timeout(close, writer).await {
        Ok(Ok(result)) => result.map_err(BridgeError::Stdout),
        Ok(Err(join)) => Err(BridgeError::Stdout(std::io::Error::other(join))),
        Err(_) => Err(BridgeError::Stdout(std::io::Error::other("timed out flushing stdout at exit"))),
    };
    read_outcome?;
    written
}

/// The gateway URL, trimmed, once it is known to be usable.
fn checked_url(opts: &BridgeOptions) -> Result<&str, BridgeError> {
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
    Ok(url)
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

impl<G: GatewayClient> Host<G> {
    async fn on_line(self: &Arc<Self>, line: Vec<u8>) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        match jsonrpc::parse(&line) {
            Err(failure) => {
                tracing::debug!(?failure, "bad line from the host");
                self.outbox.send(failure.to_error_line()).await;
            }
            Ok(Message::Request { id, method, .. }) if method == "ping" => {
                tracing::debug!(method, id = id.get(), "request from the host");
                self.outbox.send(jsonrpc::result_line(&id, "{}")).await;
            }
            Ok(Message::Request { id, method, params }) => {
                tracing::debug!(method, id = id.get(), "request from the host");
                G::on_request(self, HostRequest { id, method, params, line }).await;
            }
            Ok(Message::Notification { method, params }) => {
                if method == "notifications/cancelled" {
                    self.cancel(params.as_deref());
                }
                G::on_notification(self, &method, line);
            }
            Ok(Message::Response { id, outcome }) => G::on_response(self, id, outcome),
        }
    }

    /// `notifications/cancelled`: drops the request's task, so no response is sent.
    fn cancel(&self, params: Option<&RawValue>) {
        let request_id = params
            .and_then(|p| serde_json::from_str::<CancelledParams>(p.get()).ok())
            .map(|p| jsonrpc::id_key(&p.request_id));
        let Some(key) = request_id else {
            return;
        };
        let entry = self.inflight.lock().ok().and_then(|mut m| m.remove(&key));
        match entry {
            Some((_, token)) => {
                tracing::debug!(request = key, "host cancelled a request");
                token.cancel();
            }
            None => tracing::debug!(request = key, "cancellation for no in-flight request"),
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

/// Legacy: `initialize` is answered locally; `tools/list` and `tools/call` go to the
/// JSON routes; nothing else exists.
impl GatewayClient for LegacyGateway {
    async fn on_request(host: &Arc<Host<Self>>, request: HostRequest) {
        let HostRequest { id, method, params, .. } = request;
        match method.as_str() {
            "initialize" => {
                let params =
                    params.as_deref().and_then(|p| serde_json::from_str::<InitializeParams>(p.get()).ok());
                if let Some(info) = params.as_ref().and_then(|p| p.client_info.as_ref()) {
                    host.gateway.set_client_info(info);
                }
                let requested = params.as_ref().and_then(|p| p.protocol_version.as_deref());
                let result = local_initialize_result(requested, false);
                host.outbox.send(jsonrpc::result_line(&id, &result.to_string())).await;
            }
            "tools/list" => {
                let task = Arc::clone(host);
                host.spawn_request(jsonrpc::id_key(&id), async move {
                    let answer = match task.gateway.list_tools().await {
                        Ok(body) => jsonrpc::result_line(&id, &String::from_utf8_lossy(&body)),
                        Err(e) => e.to_error_line(&id),
                    };
                    task.outbox.send(answer).await;
                });
            }
            "tools/call" => {
                let task = Arc::clone(host);
                host.spawn_request(jsonrpc::id_key(&id), async move {
                    let answer = task.legacy_call(&id, params.as_deref()).await;
                    task.outbox.send(answer).await;
                });
            }
            _ => {
                let message = format!("Method not found: {method}");
                host.outbox.send(jsonrpc::error_line(Some(&id), code::METHOD_NOT_FOUND, &message)).await;
            }
        }
    }

    fn on_notification(_host: &Arc<Host<Self>>, method: &str, _line: Vec<u8>) {
        tracing::trace!(method, "notification handled locally");
    }

    fn on_response(_host: &Arc<Host<Self>>, id: Box<RawValue>, _outcome: Outcome) {
        tracing::debug!(id = id.get(), "ignoring an unsolicited response");
    }

    async fn close(&self, limit: Duration) {
        LegacyGateway::close(self, limit).await;
    }
}

impl Host<LegacyGateway> {
    /// Legacy `tools/call`: `/call-tool`, with keep-alive progress while it runs.
    async fn legacy_call(&self, id: &RawValue, params: Option<&RawValue>) -> String {
        let invalid = |message: &str| jsonrpc::error_line(Some(id), code::INVALID_PARAMS, message);
        let params = match params.map(|p| serde_json::from_str::<CallToolParams<'_>>(p.get())) {
            Some(Ok(p)) => p,
            Some(Err(e)) => return invalid(&format!("Invalid params: {e}")),
            None => return invalid("Invalid params: missing"),
        };
        let Some(name) = params.name.as_deref() else {
            return invalid("Invalid params: missing tool name");
        };
        if params.arguments.is_some_and(|a| !a.get().trim_start().starts_with(['{', 'n'])) {
            return invalid("Invalid params: arguments must be an object");
        }
        let arguments = params.arguments.filter(|a| a.get().trim() != "null");
        let token = params.meta.and_then(|m| m.progress_token);
        let call = self.gateway.call_tool(name, arguments);
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
}

/// MCP: every request, `initialize` included, is relayed to the gateway; so are
/// notifications (but `initialized`, which the bridge sends itself) and the host's
/// answers to server→client requests.
impl GatewayClient for McpGateway {
    async fn on_request(host: &Arc<Host<Self>>, request: HostRequest) {
        let HostRequest { id, method, params, line } = request;
        let task = Arc::clone(host);
        if method == "initialize" {
            // Take the session lock now, in reading order, so that every
            // later request waits for this initialize to finish.
            let guard = host.gateway.begin_initialize(params.as_deref()).await;
            host.spawn_request(jsonrpc::id_key(&id), async move {
                let answer = task.gateway.initialize(guard, &id, &line, &task.outbox).await;
                task.outbox.send(answer).await;
            });
            return;
        }
        host.spawn_request(jsonrpc::id_key(&id), async move {
            let answer = match task.gateway.forward(&line, &id, &task.outbox).await {
                Ok(outcome) => jsonrpc::response_line(&id, &outcome),
                Err(e) if method == "tools/call" && !e.is_protocol_error() => e.to_tool_error_line(&id),
                Err(e) => e.to_error_line(&id),
            };
            task.outbox.send(answer).await;
        });
    }

    fn on_notification(host: &Arc<Host<Self>>, method: &str, line: Vec<u8>) {
        // `notifications/initialized` is sent by the bridge itself right
        // after the gateway's initialize; everything else is relayed.
        if method == "notifications/initialized" {
            tracing::trace!(method, "notification handled locally");
            return;
        }
        let task = Arc::clone(host);
        host.tracker.spawn(async move { task.gateway.notify(&line).await });
    }

    fn on_response(host: &Arc<Host<Self>>, id: Box<RawValue>, outcome: Outcome) {
        let task = Arc::clone(host);
        host.tracker.spawn(async move {
            if !task.gateway.relay_response(&id, &outcome).await {
                tracing::debug!(id = id.get(), "ignoring an unsolicited response");
            }
        });
    }

    async fn close(&self, limit: Duration) {
        McpGateway::close(self, limit).await;
    }
}
