//! The requests each scenario sends, over the worker's public HTTP contract:
//! untimed setup per task (a session, an MCP session, a cache warm-up), the
//! timed request, and best-effort cleanup.
//! Must not: share code or types with the worker: the bench sees only what a
//! client sees (the protocol's names and framing come from [`crate::protocol`], as any
//! client's would). Bodies are built once per run, not per request.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;

use super::BenchError;
use super::options::{BenchOptions, Scenario};
use super::reply::{RpcReply, find_reply};
use super::report::{ErrorKind, Outcome};
use crate::protocol::sse::SseDecoder;
use crate::protocol::{
    ACCEPT_JSON_AND_SSE, EVENT_STREAM, LATEST_VERSION, SESSION_HEADER, VERSION_HEADER, modern,
};

/// The `_meta` of every modern-era request: the version and no client capabilities.
const MODERN_META: &str = r#"{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"switchboard-bench","version":"0"}}"#;
/// How long to keep reading a response after its reply was found, so the
/// connection can be reused; not part of the measured latency.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Ids of different tasks never collide: task `i` uses `(i + 1) * ID_STRIDE + n`.
const ID_STRIDE: u64 = 1_000_000_000;

/// What every task shares: URLs, headers and bodies built once.
#[derive(Debug)]
pub(crate) struct Target {
    /// Which request the loop repeats.
    scenario: Scenario,
    /// `{url}/init`.
    init_url: String,
    /// `{url}/call-tool`.
    call_url: String,
    /// `{url}/session`, for cleanup.
    session_url: String,
    /// The Streamable HTTP endpoint.
    mcp_url: String,
    /// `/init` body with the credentials.
    init_body: Bytes,
    /// `/call-tool` body (with `"cache": false` for `call`).
    call_body: Bytes,
    /// JSON text of the tool name, spliced into `tools/call` bodies.
    tool_json: String,
    /// JSON text of the arguments, spliced into `tools/call` bodies.
    arguments_json: String,
    /// `Bearer {token}` for `/mcp`.
    authorization: HeaderValue,
    /// The tool name as an `Mcp-Name` header value (modern era).
    modern_name: HeaderValue,
}

impl Target {
    /// Builds the shared request parts from the options.
    pub(crate) fn new(opts: &BenchOptions) -> Result<Self, BenchError> {
        let url = opts.url.trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&url).map_err(|e| BenchError::InvalidUrl(format!("{url}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(BenchError::InvalidUrl(format!("{url}: not http(s)")));
        }
        let mcp_url = if url.ends_with("/mcp") { url.clone() } else { format!("{url}/mcp") };
        let base = url.strip_suffix("/mcp").unwrap_or(&url).to_owned();
        let mut call = serde_json::json!({ "tool": opts.tool, "arguments": opts.arguments });
        if opts.scenario == Scenario::Call {
            call["cache"] = serde_json::Value::Bool(false);
        }
        let authorization = HeaderValue::from_str(&format!("Bearer {}", opts.token))
            .map_err(|_| BenchError::InvalidOptions("token is not a valid header value".into()))?;
        Ok(Target {
            scenario: opts.scenario,
            init_url: format!("{base}/init"),
            call_url: format!("{base}/call-tool"),
            session_url: format!("{base}/session"),
            mcp_url,
            init_body: json_bytes(&serde_json::json!({ "credentials": { "token": opts.token } })),
            call_body: json_bytes(&call),
            tool_json: serde_json::Value::String(opts.tool.clone()).to_string(),
            arguments_json: opts.arguments.to_string(),
            modern_name: HeaderValue::from_str(&modern::encode_header_value(&opts.tool))
                .map_err(|_| BenchError::InvalidOptions("tool name is not a header value".into()))?,
            authorization,
        })
    }

    /// The URL the timed requests go to (for the report).
    pub(crate) fn timed_url(&self) -> &str {
        match self.scenario {
            Scenario::Init => &self.init_url,
            Scenario::Call | Scenario::CallCached => &self.call_url,
            Scenario::Mcp | Scenario::McpModern => &self.mcp_url,
        }
    }

    /// Untimed per-task setup: opens what the scenario needs.
    pub(crate) async fn open(&self, client: &reqwest::Client, task: usize) -> Result<TaskState, BenchError> {
        let setup = |step: &'static str, detail: String| BenchError::Setup { task, step, detail };
        match self.scenario {
            Scenario::Init => Ok(TaskState::Init),
            Scenario::Call | Scenario::CallCached => {
                let resp = client
                    .post(&self.init_url)
                    .header(CONTENT_TYPE, "application/json")
                    .body(self.init_body.clone())
                    .send()
                    .await
                    .map_err(|e| setup("init", e.to_string()))?;
                let body = read_success(resp).await.map_err(|d| setup("init", d))?;
                let reply: InitReply = serde_json::from_slice(&body)
                    .map_err(|e| setup("init", format!("unexpected body: {e}")))?;
                let session = HeaderValue::from_str(&reply.session_id)
                    .map_err(|_| setup("init", "session id is not a header value".into()))?;
                let mut state = TaskState::Call { session };
                if self.scenario == Scenario::CallCached {
                    let (outcome, _) = self.call(client, &mut state).await;
                    if let Outcome::Failed(kind) = outcome {
                        return Err(setup("cache warm-up call", kind.key()));
                    }
                }
                Ok(state)
            }
            Scenario::Mcp => self.open_mcp(client, task).await,
            Scenario::McpModern => Ok(TaskState::McpModern { next_id: (task as u64 + 1) * ID_STRIDE }),
        }
    }

    async fn open_mcp(&self, client: &reqwest::Client, task: usize) -> Result<TaskState, BenchError> {
        let setup = |step: &'static str, detail: String| BenchError::Setup { task, step, detail };
        let id = (task as u64 + 1) * ID_STRIDE;
        let initialize = serde_json::json!({
            "jsonrpc": "2.0",
            "id": id,
            "method": "initialize",
            "params": {
                "protocolVersion": LATEST_VERSION,
                "capabilities": {},
                "clientInfo": { "name": "switchboard-bench", "version": env!("CARGO_PKG_VERSION") },
            },
        });
        let resp = self
            .mcp_post(client, None, None, json_bytes(&initialize))
            .send()
            .await
            .map_err(|e| setup("initialize", e.to_string()))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            return Err(setup("initialize", format!("HTTP {status}: {}", snippet(&text))));
        }
        let session = resp.headers().get(SESSION_HEADER).cloned();
        let reply: RpcReply<InitializeResult> = match read_rpc_reply(resp, id).await {
            Ok(Some(reply)) => reply,
            Ok(None) => return Err(setup("initialize", "no response with our id".into())),
            Err(kind) => return Err(setup("initialize", kind.key())),
        };
        if let Some(err) = reply.error {
            return Err(setup("initialize", format!("JSON-RPC error {}: {}", err.code, err.message)));
        }
        let negotiated =
            reply.result.and_then(|r| r.protocol_version).unwrap_or_else(|| LATEST_VERSION.to_owned());
        let protocol = HeaderValue::from_str(&negotiated)
            .map_err(|_| setup("initialize", "protocol version is not a header value".into()))?;
        let initialized = Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        let resp = self
            .mcp_post(client, session.as_ref(), Some(&protocol), initialized)
            .send()
            .await
            .map_err(|e| setup("notifications/initialized", e.to_string()))?;
        read_success(resp).await.map_err(|d| setup("notifications/initialized", d))?;
        Ok(TaskState::Mcp { session, protocol, next_id: id + 1 })
    }

    /// One timed request. Returns the outcome and the latency from sending
    /// to having the answer (draining the rest of a stream is not counted).
    pub(crate) async fn call(&self, client: &reqwest::Client, state: &mut TaskState) -> (Outcome, Duration) {
        let started = Instant::now();
        match state {
            TaskState::Init => {
                let sent = client
                    .post(&self.init_url)
                    .header(CONTENT_TYPE, "application/json")
                    .body(self.init_body.clone())
                    .send()
                    .await;
                let outcome = match read_json::<InitReply>(sent).await {
                    Ok(_) => Outcome::Ok { cached: false },
                    Err(kind) => Outcome::Failed(kind),
                };
                (outcome, started.elapsed())
            }
            TaskState::Call { session } => {
                let sent = client
                    .post(&self.call_url)
                    .header(CONTENT_TYPE, "application/json")
                    .header(SESSION_HEADER, session.clone())
                    .body(self.call_body.clone())
                    .send()
                    .await;
                let outcome = match read_json::<CallToolReply>(sent).await {
                    Ok(CallToolReply { result: Some(result), cached }) => {
                        if result.is_error {
                            Outcome::Failed(ErrorKind::ToolError)
                        } else {
                            Outcome::Ok { cached: cached || result.cached() }
                        }
                    }
                    Ok(CallToolReply { result: None, .. }) => Outcome::Failed(ErrorKind::Body),
                    Err(kind) => Outcome::Failed(kind),
                };
                (outcome, started.elapsed())
            }
            TaskState::Mcp { session, protocol, next_id } => {
                let id = *next_id;
                *next_id += 1;
                let body = format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":{},"arguments":{}}}}}"#,
                    self.tool_json, self.arguments_json
                );
                let request = self.mcp_post(client, session.as_ref(), Some(protocol), Bytes::from(body));
                self.timed_tools_call(request, id, started).await
            }
            TaskState::McpModern { next_id } => {
                let id = *next_id;
                *next_id += 1;
                let body = format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":{},"arguments":{},"_meta":{}}}}}"#,
                    self.tool_json, self.arguments_json, MODERN_META
                );
                let request = self
                    .mcp_post(
                        client,
                        None,
                        Some(&HeaderValue::from_static(modern::VERSION)),
                        Bytes::from(body),
                    )
                    .header(modern::METHOD_HEADER, "tools/call")
                    .header(modern::NAME_HEADER, self.modern_name.clone());
                self.timed_tools_call(request, id, started).await
            }
        }
    }

    /// Sends a `tools/call` and reads its reply with `id`: the outcome and the latency.
    async fn timed_tools_call(
        &self,
        request: reqwest::RequestBuilder,
        id: u64,
        started: Instant,
    ) -> (Outcome, Duration) {
        let resp = match request.send().await {
            Ok(resp) => resp,
            Err(e) => return (Outcome::Failed(ErrorKind::from_reqwest(&e)), started.elapsed()),
        };
        if !resp.status().is_success() {
            let code = resp.status().as_u16();
            drain(resp).await;
            return (Outcome::Failed(ErrorKind::Http(code)), started.elapsed());
        }
        let mut latency = started.elapsed();
        let outcome = match read_rpc_reply_timed::<ToolResultFlag>(resp, id, started, &mut latency).await {
            Ok(Some(reply)) => match (reply.error, reply.result) {
                (Some(_), _) => Outcome::Failed(ErrorKind::RpcError),
                (None, Some(flag)) if flag.is_error => Outcome::Failed(ErrorKind::ToolError),
                (None, Some(flag)) => Outcome::Ok { cached: flag.cached() },
                (None, None) => Outcome::Failed(ErrorKind::NoReply),
            },
            Ok(None) => Outcome::Failed(ErrorKind::NoReply),
            Err(kind) => Outcome::Failed(kind),
        };
        (outcome, latency)
    }

    /// Best-effort, untimed cleanup of what `open` created.
    pub(crate) async fn close(&self, client: &reqwest::Client, state: TaskState) {
        let request = match state {
            TaskState::Init | TaskState::McpModern { .. } => return,
            TaskState::Call { session } => client.delete(&self.session_url).header(SESSION_HEADER, session),
            TaskState::Mcp { session: None, .. } => return,
            TaskState::Mcp { session: Some(session), protocol, .. } => client
                .delete(&self.mcp_url)
                .header(AUTHORIZATION, self.authorization.clone())
                .header(VERSION_HEADER, protocol)
                .header(SESSION_HEADER, session),
        };
        if let Ok(resp) = request.timeout(Duration::from_secs(5)).send().await {
            drain(resp).await;
        }
    }

    fn mcp_post(
        &self,
        client: &reqwest::Client,
        session: Option<&HeaderValue>,
        protocol: Option<&HeaderValue>,
        body: Bytes,
    ) -> reqwest::RequestBuilder {
        let mut request = client
            .post(&self.mcp_url)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, ACCEPT_JSON_AND_SSE)
            .header(AUTHORIZATION, self.authorization.clone());
        if let Some(session) = session {
            request = request.header(SESSION_HEADER, session.clone());
        }
        if let Some(protocol) = protocol {
            request = request.header(VERSION_HEADER, protocol.clone());
        }
        request.body(body)
    }
}

/// Per-task state made by `open` and used by every timed request.
#[derive(Debug)]
pub(crate) enum TaskState {
    /// `init` needs nothing.
    Init,
    /// A worker session for `/call-tool`.
    Call {
        /// The `Mcp-Session-Id` value.
        session: HeaderValue,
    },
    /// An MCP session (or none, for a stateless server).
    Mcp {
        /// `Mcp-Session-Id` the server returned, if any.
        session: Option<HeaderValue>,
        /// Negotiated `MCP-Protocol-Version`.
        protocol: HeaderValue,
        /// Next JSON-RPC id; unique across tasks.
        next_id: u64,
    },
    /// Nothing to open in the modern era: every request stands alone.
    McpModern {
        /// Next JSON-RPC id; unique across tasks.
        next_id: u64,
    },
}

/// `/init` answer; only the session id matters here.
#[derive(Debug, Deserialize)]
struct InitReply {
    /// The new session's id.
    session_id: String,
}

/// `/call-tool` answer.
#[derive(Debug, Deserialize)]
struct CallToolReply {
    /// The tool result; only `isError` is looked at.
    #[serde(default)]
    result: Option<ToolResultFlag>,
    /// Whether the worker answered from its result cache.
    #[serde(default)]
    cached: bool,
}

/// The fields of a `CallToolResult` the bench looks at.
#[derive(Debug, Deserialize)]
pub(crate) struct ToolResultFlag {
    /// `true` when the tool reported a failure.
    #[serde(default, rename = "isError")]
    pub(crate) is_error: bool,
    /// The gateway marks a result served from its cache in `_meta` (the only sign on `/mcp`).
    #[serde(default, rename = "_meta")]
    meta: Option<ResultMeta>,
}

/// The part of a result's `_meta` the bench reads.
#[derive(Debug, Deserialize)]
struct ResultMeta {
    #[serde(default, rename = "switchboard/cached")]
    cached: bool,
}

impl ToolResultFlag {
    /// Whether the result came from the gateway's cache.
    pub(crate) fn cached(&self) -> bool {
        self.meta.as_ref().is_some_and(|m| m.cached)
    }
}

/// The one field of an `initialize` result the bench needs.
#[derive(Debug, Deserialize)]
struct InitializeResult {
    /// The version the server chose.
    #[serde(default, rename = "protocolVersion")]
    protocol_version: Option<String>,
}

/// Serializes a JSON value built in this module (cannot fail: string keys only).
fn json_bytes(value: &serde_json::Value) -> Bytes {
    Bytes::from(value.to_string())
}

/// First 300 characters of a body, for setup error messages.
fn snippet(text: &str) -> String {
    text.chars().take(300).collect()
}

/// Reads a whole body of a 2xx response, or describes why not (setup only).
async fn read_success(resp: reqwest::Response) -> Result<Bytes, String> {
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("HTTP {status}: {}", snippet(&String::from_utf8_lossy(&body))))
    }
}

/// Reads a JSON body of a legacy-route answer, classifying failures.
async fn read_json<T: serde::de::DeserializeOwned>(
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, ErrorKind> {
    let resp = sent.map_err(|e| ErrorKind::from_reqwest(&e))?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| ErrorKind::from_reqwest(&e))?;
    if !status.is_success() {
        return Err(ErrorKind::Http(status.as_u16()));
    }
    serde_json::from_slice(&body).map_err(|_| ErrorKind::Body)
}

/// Reads the JSON-RPC response to `id` from a JSON or SSE answer (setup).
async fn read_rpc_reply<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
    id: u64,
) -> Result<Option<RpcReply<T>>, ErrorKind> {
    let mut latency = Duration::ZERO;
    read_rpc_reply_timed(resp, id, Instant::now(), &mut latency).await
}

/// Reads the JSON-RPC response to `id` from a JSON or SSE answer, setting
/// `latency` when the reply has been parsed; then drains the rest of the
/// stream (bounded) so the connection can be reused.
async fn read_rpc_reply_timed<T: serde::de::DeserializeOwned>(
    mut resp: reqwest::Response,
    id: u64,
    started: Instant,
    latency: &mut Duration,
) -> Result<Option<RpcReply<T>>, ErrorKind> {
    let is_sse = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with(EVENT_STREAM));
    if !is_sse {
        let body = resp.bytes().await.map_err(|e| ErrorKind::from_reqwest(&e))?;
        *latency = started.elapsed();
        return Ok(find_reply(&body, id));
    }
    let mut decoder = SseDecoder::new();
    loop {
        let chunk = resp.chunk().await.map_err(|e| ErrorKind::from_reqwest(&e))?;
        let events = match &chunk {
            Some(chunk) => decoder.push(chunk).map_err(|_| ErrorKind::Body)?,
            None => decoder.finish().into_iter().collect(),
        };
        for event in events {
            if let Some(reply) = find_reply(event.data.as_bytes(), id) {
                *latency = started.elapsed();
                drain(resp).await;
                return Ok(Some(reply));
            }
        }
        if chunk.is_none() {
            *latency = started.elapsed();
            return Ok(None);
        }
    }
}

/// Reads and discards the rest of a body for at most [`DRAIN_TIMEOUT`].
async fn drain(mut resp: reqwest::Response) {
    let _ =
        tokio::time::timeout(DRAIN_TIMEOUT, async { while let Ok(Some(_)) = resp.chunk().await {} }).await;
}
