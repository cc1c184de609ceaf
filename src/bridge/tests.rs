//! End-to-end tests of the bridge: a host talks to it over in-memory stdio and
//! it talks to a small mock gateway (axum on 127.0.0.1:0) over real HTTP.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines};

use super::host::{Tuning, serve};
use super::*;

// ---------------------------------------------------------------- harness

struct Host {
    stdin: Option<DuplexStream>,
    stdout: Lines<BufReader<DuplexStream>>,
    bridge: tokio::task::JoinHandle<Result<(), BridgeError>>,
}

fn tuning() -> Tuning {
    Tuning { keepalive: Duration::from_millis(100), ..Tuning::default() }
}

fn start(url: &str, transport: Transport, credentials: Value) -> Host {
    start_with(url, transport, credentials, tuning())
}

fn start_with(url: &str, transport: Transport, credentials: Value, tuning: Tuning) -> Host {
    let (host_w, bridge_r) = tokio::io::duplex(1 << 20);
    let (bridge_w, host_r) = tokio::io::duplex(1 << 20);
    let opts = BridgeOptions {
        url: url.to_owned(),
        transport,
        credentials,
        request_timeout: Duration::from_secs(2),
        protocol: super::Protocol::Auto,
        oauth: None,
    };
    Host {
        stdin: Some(host_w),
        stdout: BufReader::new(host_r).lines(),
        bridge: tokio::spawn(serve(opts, tuning, bridge_r, bridge_w)),
    }
}

impl Host {
    async fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).await.unwrap();
        stdin.write_all(b"\n").await.unwrap();
    }

    async fn recv(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(5), self.stdout.next_line())
            .await
            .expect("bridge answered in time")
            .unwrap()
            .expect("bridge stdout open");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line} ({e})"))
    }

    /// Receives until the response with `id`; returns it and what came before.
    async fn response(&mut self, id: Value) -> (Value, Vec<Value>) {
        let mut before = Vec::new();
        loop {
            let message = self.recv().await;
            if message.get("id") == Some(&id) && message.get("method").is_none() {
                return (message, before);
            }
            before.push(message);
        }
    }

    async fn request(&mut self, id: u64, method: &str, params: Value) -> Value {
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()).await;
        self.response(json!(id)).await.0
    }

    async fn initialize(&mut self) -> Value {
        let init = self
            .request(
                0,
                "initialize",
                json!({"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "test-host", "version": "9.9"}}),
            )
            .await;
        self.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).await;
        init
    }

    /// Closes stdin and waits for the bridge to return.
    async fn finish(mut self) -> Result<(), BridgeError> {
        self.stdin.take();
        tokio::time::timeout(Duration::from_secs(5), self.bridge)
            .await
            .expect("bridge exits after EOF")
            .unwrap()
    }
}

fn text(result: &Value) -> &str {
    result["result"]["content"][0]["text"].as_str().unwrap_or("")
}

/// Waits, bounded, until `ready` holds: the tests wait for what they need, not for a
/// fixed time.
async fn eventually(what: &str, ready: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !ready() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn listen(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

/// A loopback URL where nothing listens (yet).
async fn free_url() -> (String, std::net::SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (format!("http://{addr}"), addr)
}

// ---------------------------------------------------------- legacy gateway

#[derive(Default)]
struct Worker {
    inits: AtomicUsize,
    init_bodies: Mutex<Vec<Value>>,
    sessions: Mutex<HashSet<String>>,
    call_delay_ms: AtomicU64,
    calls: AtomicUsize,
    /// Calls that are over on the worker's side: answered, or dropped with their connection.
    calls_over: AtomicUsize,
    refuse: AtomicBool,
}

/// Counts a call as over when the handler ends, whichever way it ends.
struct CallOver(Arc<Worker>);

impl Drop for CallOver {
    fn drop(&mut self) {
        self.0.calls_over.fetch_add(1, Ordering::SeqCst);
    }
}

/// A legacy host (no credentials) in front of a worker whose calls take `delay_ms`.
async fn legacy_host(delay_ms: u64, tuning: Tuning) -> (Arc<Worker>, Host) {
    let worker = Arc::new(Worker::default());
    worker.call_delay_ms.store(delay_ms, Ordering::SeqCst);
    let url = listen(worker_router(worker.clone())).await;
    (worker, start_with(&url, Transport::Legacy, json!({}), tuning))
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

fn session_of(worker: &Worker, headers: &HeaderMap) -> Option<String> {
    let id = headers.get("mcp-session-id")?.to_str().ok()?.to_owned();
    worker.sessions.lock().unwrap().contains(&id).then_some(id)
}

fn worker_router(worker: Arc<Worker>) -> Router {
    async fn init(State(w): State<Arc<Worker>>, axum::Json(body): axum::Json<Value>) -> Response {
        if w.refuse.load(Ordering::SeqCst) {
            return error(StatusCode::UNAUTHORIZED, "invalid_credentials", "token rejected");
        }
        w.init_bodies.lock().unwrap().push(body);
        let n = w.inits.fetch_add(1, Ordering::SeqCst) + 1;
        let id = format!("session-{n}");
        w.sessions.lock().unwrap().insert(id.clone());
        axum::Json(json!({"session_id": id, "idle_ttl_secs": 86400})).into_response()
    }
    async fn tools(State(w): State<Arc<Worker>>, headers: HeaderMap) -> Response {
        if session_of(&w, &headers).is_none() {
            return error(StatusCode::NOT_FOUND, "session_not_found", "no such session");
        }
        // Unknown fields and a big integer must reach the host unchanged.
        let body = r#"{"tools":[{"name":"echo","inputSchema":{"type":"object"},"x-future":{"n":12345678901234567890}}]}"#;
        ([("content-type", "application/json")], body).into_response()
    }
    async fn call(State(w): State<Arc<Worker>>, headers: HeaderMap, body: String) -> Response {
        if session_of(&w, &headers).is_none() {
            return error(StatusCode::NOT_FOUND, "session_not_found", "no such session");
        }
        w.calls.fetch_add(1, Ordering::SeqCst);
        let _over = CallOver(Arc::clone(&w));
        tokio::time::sleep(Duration::from_millis(w.call_delay_ms.load(Ordering::SeqCst))).await;
        let request: Value = serde_json::from_str(&body).unwrap();
        match request["tool"].as_str() {
            Some("echo") => {
                let text = request["arguments"]["text"].clone();
                axum::Json(json!({"result": {"content": [{"type": "text", "text": text}]}, "cached": false}))
                    .into_response()
            }
            Some("broken") => error(StatusCode::BAD_GATEWAY, "mcp_server_failed", "server exited"),
            Some("bad") => error(StatusCode::BAD_REQUEST, "invalid_arguments", "text is required"),
            _ => error(StatusCode::BAD_REQUEST, "unknown_tool", "no such tool"),
        }
    }
    Router::new()
        .route("/init", post(init))
        .route("/tools", get(tools))
        .route("/call-tool", post(call))
        .route("/session", axum::routing::delete(|| async { StatusCode::NO_CONTENT }))
        .with_state(worker)
}

#[tokio::test]
async fn initialize_and_ping_are_answered_without_touching_the_gateway() {
    let (url, _) = free_url().await;
    let mut host = start(&url, Transport::Legacy, json!({}));
    let init = host.initialize().await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
    assert_eq!(init["result"]["capabilities"]["tools"], json!({"listChanged": false}));
    assert_eq!(host.request(1, "ping", json!({})).await["result"], json!({}));
    host.finish().await.unwrap();
}

#[tokio::test]
async fn an_unknown_protocol_version_gets_the_latest() {
    let (url, _) = free_url().await;
    let mut host = start(&url, Transport::Legacy, json!({}));
    let init =
        host.request(1, "initialize", json!({"protocolVersion": "1999-01-01", "capabilities": {}})).await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
}

#[tokio::test]
async fn tools_are_listed_and_called_with_raw_json_passed_through() {
    let worker = Arc::new(Worker::default());
    let url = listen(worker_router(worker.clone())).await;
    let mut host = start(&url, Transport::Legacy, json!({"token": "t0p-secret"}));
    host.initialize().await;
    assert_eq!(worker.inits.load(Ordering::SeqCst), 0, "session opened lazily");

    host.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).await;
    let line = tokio::time::timeout(Duration::from_secs(5), host.stdout.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(line.contains(r#""x-future":{"n":12345678901234567890}"#), "{line}");

    let call = host.request(2, "tools/call", json!({"name": "echo", "arguments": {"text": "hi"}})).await;
    assert_eq!(text(&call), "hi");
    assert_eq!(worker.inits.load(Ordering::SeqCst), 1);
    let init_body = worker.init_bodies.lock().unwrap()[0].clone();
    assert_eq!(init_body["credentials"], json!({"token": "t0p-secret"}));
    assert_eq!(init_body["client"], json!({"name": "test-host", "version": "9.9"}));
    host.finish().await.unwrap();
}

#[tokio::test]
async fn an_expired_session_is_replaced_once_and_the_call_retried() {
    let (worker, mut host) = legacy_host(0, tuning()).await;
    host.initialize().await;
    let first = host.request(1, "tools/call", json!({"name": "echo", "arguments": {"text": "one"}})).await;
    assert_eq!(text(&first), "one");

    worker.sessions.lock().unwrap().clear(); // the session expires in Redis
    // Several concurrent calls all see the 404; exactly one new session is opened.
    for id in 10..14 {
        host.send(
            &json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                    "params": {"name": "echo", "arguments": {"text": "again"}}})
            .to_string(),
        )
        .await;
    }
    for _ in 10..14 {
        let answer = host.recv().await;
        assert_eq!(text(&answer), "again", "{answer}");
        assert!(answer["result"].get("isError").is_none());
    }
    assert_eq!(worker.inits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_stopped_gateway_gives_a_readable_error_and_a_restarted_one_works() {
    let (url, addr) = free_url().await;
    let mut host = start(&url, Transport::Legacy, json!({}));
    host.initialize().await;
    let down = host.request(1, "tools/call", json!({"name": "echo", "arguments": {}})).await;
    assert_eq!(down["result"]["isError"], true);
    assert!(text(&down).contains("unreachable"), "{down}");

    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let router = worker_router(Arc::new(Worker::default()));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let up = host.request(2, "tools/call", json!({"name": "echo", "arguments": {"text": "back"}})).await;
    assert_eq!(text(&up), "back");
}

#[tokio::test]
async fn refused_credentials_become_an_is_error_result_with_a_hint() {
    let worker = Arc::new(Worker::default());
    worker.refuse.store(true, Ordering::SeqCst);
    let url = listen(worker_router(worker)).await;
    let mut host = start(&url, Transport::Legacy, json!({}));
    host.initialize().await;
    let answer = host.request(1, "tools/call", json!({"name": "echo"})).await;
    assert_eq!(answer["result"]["isError"], true);
    assert!(text(&answer).contains("refused the credentials"), "{answer}");
    assert!(text(&answer).contains("SWITCHBOARD_TOKEN"), "{answer}");
    // tools/list cannot carry isError: a JSON-RPC error instead.
    let list = host.request(2, "tools/list", json!({})).await;
    assert_eq!(list["error"]["code"], -32603);
}

#[tokio::test]
async fn gateway_errors_map_to_tool_errors_or_protocol_errors() {
    let url = listen(worker_router(Arc::new(Worker::default()))).await;
    let mut host = start(&url, Transport::Legacy, json!({}));
    host.initialize().await;
    let broken = host.request(1, "tools/call", json!({"name": "broken"})).await;
    assert_eq!(broken["result"]["isError"], true);
    assert!(text(&broken).contains("MCP server failed"), "{broken}");
    let bad = host.request(2, "tools/call", json!({"name": "bad"})).await;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    let nameless = host.request(3, "tools/call", json!({"arguments": {}})).await;
    assert_eq!(nameless["error"]["code"], -32602);
}

#[tokio::test]
async fn a_slow_call_does_not_block_ping_and_sends_keepalive_progress() {
    let (_, mut host) = legacy_host(500, tuning()).await;
    host.initialize().await;
    host.send(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"slow"},"_meta":{"progressToken":"tok"}}}"#,
    )
    .await;
    host.send(r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#).await;
    let first_answer = loop {
        let message = host.recv().await;
        if message.get("id").is_some() {
            break message;
        }
    };
    assert_eq!(first_answer["id"], 2, "ping answered while the call runs");
    let (call, before) = host.response(json!(1)).await;
    assert_eq!(text(&call), "slow");
    let progress: Vec<&Value> = before.iter().filter(|m| m["method"] == "notifications/progress").collect();
    assert!(progress.len() >= 2, "{before:?}");
    assert!(progress.iter().all(|p| p["params"]["progressToken"] == "tok"));
    assert!(progress[0]["params"]["progress"].as_u64() < progress[1]["params"]["progress"].as_u64());
}

#[tokio::test]
async fn a_cancelled_call_is_aborted_and_never_answered() {
    let (worker, mut host) = legacy_host(800, tuning()).await;
    host.initialize().await;
    host.send(r#"{"jsonrpc":"2.0","id":"c","method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}"#)
        .await;
    eventually("the call reached the worker", || worker.calls.load(Ordering::SeqCst) == 1).await;
    host.send(
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"c","reason":"user"}}"#,
    )
    .await;
    eventually("the call is over on the worker", || worker.calls_over.load(Ordering::SeqCst) == 1).await;
    host.send(r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#).await;
    let (ping, before) = host.response(json!(2)).await;
    assert_eq!(ping["result"], json!({}));
    assert!(before.is_empty(), "nothing answered the cancelled call: {before:?}");
    host.finish().await.unwrap();
}

#[tokio::test]
async fn malformed_lines_get_errors_and_the_bridge_keeps_serving() {
    let (url, _) = free_url().await;
    let mut host = start(&url, Transport::Legacy, json!({}));
    host.send("this is not json").await;
    assert_eq!(host.recv().await["error"]["code"], -32700);
    host.send(r#"{"jsonrpc":"2.0","id":77,"result":{}}"#).await; // unsolicited: ignored
    host.send("").await; // blank: ignored
    host.send(r#"{"jsonrpc":"2.0","id":5,"method":"no/such/method"}"#).await;
    let unknown = host.recv().await;
    assert_eq!((unknown["id"].clone(), unknown["error"]["code"].clone()), (json!(5), json!(-32601)));
    host.send(r#"{"jsonrpc":"2.0","method":"notifications/whatever"}"#).await; // no answer
    assert_eq!(host.request(6, "ping", json!({})).await["result"], json!({}));
    host.finish().await.unwrap();
}

#[tokio::test]
async fn an_oversized_line_is_rejected_and_the_next_one_served() {
    let (url, _) = free_url().await;
    let tuning = Tuning { max_line: 64, ..tuning() };
    let mut host = start_with(&url, Transport::Legacy, json!({}), tuning);
    host.send(&format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#,
        "x".repeat(200)
    ))
    .await;
    assert_eq!(host.recv().await["error"]["code"], -32600);
    assert_eq!(host.request(2, "ping", json!({})).await["result"], json!({}));
}

#[tokio::test]
async fn eof_lets_in_flight_calls_finish_then_returns_ok() {
    let (_, mut host) = legacy_host(300, tuning()).await;
    host.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"late"}}}"#)
        .await;
    host.stdin.take(); // EOF right away
    let answer = host.recv().await;
    assert_eq!(text(&answer), "late");
    host.finish().await.unwrap();
}

#[tokio::test]
async fn eof_aborts_calls_that_outlive_the_drain_bound() {
    let (worker, mut host) =
        legacy_host(1500, Tuning { drain: Some(Duration::from_millis(100)), ..tuning() }).await;
    host.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#)
        .await;
    eventually("the call reached the worker", || worker.calls.load(Ordering::SeqCst) == 1).await;
    let started = std::time::Instant::now();
    host.finish().await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(1400));
}

#[test]
fn bad_urls_are_rejected_before_any_io() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for url in ["127.0.0.1:8080", "ftp://x", "http://", "http://h/x?y=1"] {
        let opts = BridgeOptions::new(url, Transport::Legacy, json!({}));
        let outcome = rt.block_on(run(opts, tokio::io::empty(), tokio::io::sink()));
        assert!(matches!(outcome, Err(BridgeError::InvalidUrl { .. })), "{url}");
    }
}

// ---------------------------------------------------------- credentials

fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |key| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| (*v).to_owned())
}

#[test]
fn credentials_come_from_the_environment() {
    let token = credentials_from_env(&env_of(&[("SWITCHBOARD_TOKEN", "abc")])).unwrap();
    assert_eq!(token, json!({"token": "abc"}));
    let object = credentials_from_env(&env_of(&[("SWITCHBOARD_CREDENTIALS", r#"{"api_key":"k"}"#)])).unwrap();
    assert_eq!(object, json!({"api_key": "k"}));
    let both = credentials_from_env(&env_of(&[
        ("SWITCHBOARD_CREDENTIALS", r#"{"api_key":"k"}"#),
        ("SWITCHBOARD_TOKEN", "abc"),
    ]))
    .unwrap();
    assert_eq!(both, json!({"api_key": "k", "token": "abc"}));
    assert_eq!(credentials_from_env(&env_of(&[])).unwrap(), json!({}));
    assert_eq!(credentials_from_env(&env_of(&[("SWITCHBOARD_TOKEN", " ")])).unwrap(), json!({}));
}

#[test]
fn bad_credentials_never_echo_their_value() {
    let err = credentials_from_env(&env_of(&[("SWITCHBOARD_CREDENTIALS", "s3cr3t-value")])).unwrap_err();
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
    let err = credentials_from_env(&env_of(&[("SWITCHBOARD_CREDENTIALS", r#""s3cr3t""#)])).unwrap_err();
    assert!(matches!(err, BridgeError::CredentialsNotObject));
    let opts = BridgeOptions::new("http://x", Transport::Mcp, json!({"token": "s3cr3t"}));
    assert!(!format!("{opts:?}").contains("s3cr3t"));
}

// ------------------------------------------------------------- mcp gateway

#[derive(Default)]
struct McpServer {
    inits: AtomicUsize,
    sessions: Mutex<HashSet<String>>,
    received: Mutex<Vec<Value>>,
    auth: Mutex<Vec<String>>,
}

fn sse(events: &[Value]) -> Response {
    let mut body = String::from("id: prime\ndata: \n\n");
    for (i, event) in events.iter().enumerate() {
        body.push_str(&format!("event: message\nid: e{i}\ndata: {event}\n\n"));
    }
    ([("content-type", "text/event-stream")], body).into_response()
}

/// An MCP host with `credentials` in front of a mock gateway.
async fn mcp_host(credentials: Value) -> (Arc<McpServer>, Host) {
    let server = Arc::new(McpServer::default());
    let url = listen(mcp_router(server.clone())).await;
    (server, start(&url, Transport::Mcp, credentials))
}

fn mcp_router(server: Arc<McpServer>) -> Router {
    async fn handle(State(s): State<Arc<McpServer>>, headers: HeaderMap, body: String) -> Response {
        let message: Value = serde_json::from_str(&body).unwrap();
        s.received.lock().unwrap().push(message.clone());
        if let Some(auth) = headers.get("authorization") {
            s.auth.lock().unwrap().push(auth.to_str().unwrap().to_owned());
        }
        let id = message["id"].clone();
        if message["method"] == "initialize" {
            let n = s.inits.fetch_add(1, Ordering::SeqCst) + 1;
            let session = format!("mcp-{n}");
            s.sessions.lock().unwrap().insert(session.clone());
            let result = json!({"jsonrpc": "2.0", "id": id, "result": {
                "protocolVersion": "2025-11-25", "capabilities": {"tools": {}, "x-gateway": true},
                "serverInfo": {"name": "mock-gateway", "version": "1"}}});
            return ([("mcp-session-id", session.as_str())], axum::Json(result)).into_response();
        }
        let known = headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| s.sessions.lock().unwrap().contains(v));
        if !known {
            return (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"jsonrpc": "2.0", "id": null,
                "error": {"code": -32600, "message": "Session not found"}})),
            )
                .into_response();
        }
        assert_eq!(headers.get("mcp-protocol-version").unwrap(), "2025-11-25");
        if id.is_null() || message.get("method").is_none() {
            return StatusCode::ACCEPTED.into_response();
        }
        match message["method"].as_str().unwrap() {
            "tools/list" => sse(&[
                json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "listing"}}),
                json!({"jsonrpc": "2.0", "id": id, "result": {"tools": [], "x-extra": 12345678901234567890u64}}),
            ]),
            "tools/call" if message["params"]["name"] == "slow" => {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": {"content": []}})).into_response()
            }
            "tools/call" => axum::Json(json!({"jsonrpc": "2.0", "id": id,
                "result": {"content": [{"type": "text", "text": "called"}]}}))
            .into_response(),
            _ => axum::Json(json!({"jsonrpc": "2.0", "id": id,
                "error": {"code": -32601, "message": "Method not found"}}))
            .into_response(),
        }
    }
    Router::new().route("/mcp", post(handle).delete(|| async { StatusCode::OK })).with_state(server)
}

#[tokio::test]
async fn mcp_mode_relays_initialize_and_streams_notifications_before_the_response() {
    let (server, mut host) = mcp_host(json!({"token": "tok"})).await;
    let init = host.initialize().await;
    assert_eq!(init["result"]["serverInfo"]["name"], "mock-gateway");
    assert_eq!(init["result"]["capabilities"]["x-gateway"], true);

    host.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).await;
    let mut lines = Vec::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(5), host.stdout.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let done = line.contains(r#""id":1"#);
        lines.push(line);
        if done {
            break;
        }
    }
    assert!(lines[0].contains("notifications/message"), "{lines:?}");
    assert!(lines[1].contains("12345678901234567890"), "{lines:?}");

    let unknown = host.request(2, "completion/complete", json!({})).await;
    assert_eq!(unknown["error"]["code"], -32601);
    assert!(server.auth.lock().unwrap().iter().all(|a| a == "Bearer tok"));
    let methods: Vec<Value> = server.received.lock().unwrap().iter().map(|m| m["method"].clone()).collect();
    // `--protocol auto`: the modern probe first; a legacy gateway's non-modern error (here a
    // 404 without a session) makes the bridge fall back to `initialize`, once.
    assert_eq!(
        methods[..4],
        [
            json!("server/discover"),
            json!("initialize"),
            json!("notifications/initialized"),
            json!("tools/list")
        ]
    );
    assert_eq!(methods.iter().filter(|m| *m == "server/discover").count(), 1, "{methods:?}");
    host.finish().await.unwrap();
}

#[tokio::test]
async fn mcp_mode_reinitializes_on_404_and_retries_once() {
    let server = Arc::new(McpServer::default());
    let url = listen(mcp_router(server.clone())).await;
    let mut host = start(&format!("{url}/mcp"), Transport::Mcp, json!({}));
    host.initialize().await;
    server.sessions.lock().unwrap().clear();
    let call = host.request(1, "tools/call", json!({"name": "x", "arguments": {}})).await;
    assert_eq!(text(&call), "called");
    assert_eq!(server.inits.load(Ordering::SeqCst), 2);
    // The replayed initialize carries the host's own parameters.
    let inits: Vec<Value> =
        server.received.lock().unwrap().iter().filter(|m| m["method"] == "initialize").cloned().collect();
    assert_eq!(inits[1]["params"]["clientInfo"]["name"], "test-host");
}

#[tokio::test]
async fn mcp_mode_answers_initialize_itself_when_the_gateway_is_down_and_connects_later() {
    let (url, addr) = free_url().await;
    let mut host = start(&url, Transport::Mcp, json!({}));
    let init = host.initialize().await;
    assert_eq!(init["result"]["serverInfo"]["name"], "switchboard-bridge");
    let down = host.request(1, "tools/call", json!({"name": "x"})).await;
    assert_eq!(down["result"]["isError"], true);
    let listed = host.request(2, "tools/list", json!({})).await;
    assert_eq!(listed["error"]["code"], -32603);

    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let server = Arc::new(McpServer::default());
    let router = mcp_router(server.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let call = host.request(3, "tools/call", json!({"name": "x"})).await;
    assert_eq!(text(&call), "called");
    assert_eq!(server.inits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn mcp_mode_forwards_cancellation_and_drops_the_call() {
    let (server, mut host) = mcp_host(json!({})).await;
    host.initialize().await;
    host.send(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"slow"}}"#).await;
    let received = |method: &str| {
        server
            .received
            .lock()
            .unwrap()
            .iter()
            .any(|m| m["method"] == method && (m["id"] == 7 || m["params"]["requestId"] == 7))
    };
    eventually("the call reached the gateway", || received("tools/call")).await;
    host.send(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7}}"#).await;
    eventually("the cancellation reached the gateway", || received("notifications/cancelled")).await;
    host.send(r#"{"jsonrpc":"2.0","id":8,"method":"ping"}"#).await;
    let (_, before) = host.response(json!(8)).await;
    assert!(before.is_empty(), "{before:?}");
    host.finish().await.unwrap();
}

// ---------------------------------------------------------------- modern era (2026-07-28)

/// What a mock modern gateway received: (headers, body) per POST.
type Received = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

/// A stateless 2026-07-28 gateway: answers `server/discover`, lists a tool with an
/// `x-mcp-header` and one with an invalid one, and answers the first call of `ok` with an
/// `InputRequiredResult`.
fn modern_router(received: Received) -> Router {
    async fn handle(State(r): State<Received>, headers: HeaderMap, body: String) -> Response {
        let message: Value = serde_json::from_str(&body).unwrap();
        r.lock().unwrap().push((headers, message.clone()));
        let id = message["id"].clone();
        let params = &message["params"];
        let result = match message["method"].as_str().unwrap() {
            "server/discover" => json!({"resultType": "complete", "supportedVersions": ["2026-07-28"],
                "capabilities": {"tools": {}}, "ttlMs": 0, "cacheScope": "private",
                "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "modern-mock", "version": "1"}}}),
            "tools/list" => json!({"resultType": "complete", "tools": [
                {"name": "ok", "inputSchema": {"type": "object", "properties": {
                    "region": {"type": "string", "x-mcp-header": "Region"}, "query": {"type": "string"}}}},
                {"name": "bad", "inputSchema": {"type": "object", "properties": {
                    "data": {"type": "object", "x-mcp-header": "Data"}}}}]}),
            "tools/call" if params.get("inputResponses").is_none() => json!({
                "resultType": "input_required", "requestState": "s1 \"opaque\"",
                "inputRequests": {"q": {"method": "elicitation/create", "params": {"message": "sure?"}}}}),
            "tools/call" => {
                let text = format!(
                    "{} {}",
                    params["inputResponses"]["q"]["action"].as_str().unwrap_or("?"),
                    params["requestState"].as_str().unwrap_or("?")
                );
                json!({"resultType": "complete", "content": [{"type": "text", "text": text}]})
            }
            _ => {
                let error = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "nope"}});
                return (StatusCode::NOT_FOUND, axum::Json(error)).into_response();
            }
        };
        axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
    }
    Router::new().route("/mcp", post(handle)).with_state(received)
}

#[tokio::test]
async fn auto_mode_speaks_modern_to_a_modern_gateway_with_meta_headers_and_input_rounds() {
    let received: Received = Arc::default();
    let url = listen(modern_router(received.clone())).await;
    let mut host = start(&url, Transport::Mcp, json!({"token": "tok"}));
    let init = host.initialize().await;
    assert_eq!(init["result"]["serverInfo"]["name"], "modern-mock", "{init}");
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");

    let listed = host.request(1, "tools/list", json!({})).await;
    let names: Vec<&str> =
        listed["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ok"], "a tool with an invalid x-mcp-header is left out");

    host.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"ok","arguments":{"region":"eu west 1","query":"q"}}}"#)
        .await;
    let ask = host.recv().await;
    assert_eq!(ask["method"], "elicitation/create", "{ask}");
    assert_eq!(ask["params"]["message"], "sure?");
    host.send(&json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "accept"}}).to_string()).await;
    let (call, _) = host.response(json!(2)).await;
    assert_eq!(text(&call), r#"accept s1 "opaque""#, "{call}");
    let refused = host.request(3, "tools/call", json!({"name": "bad", "arguments": {}})).await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");

    let received = received.lock().unwrap().clone();
    let methods: Vec<&str> = received.iter().map(|(_, m)| m["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["server/discover", "tools/list", "tools/call", "tools/call"]);
    let mut ids = HashSet::new();
    for (headers, message) in received.iter() {
        let method = message["method"].as_str().unwrap();
        assert_eq!(headers["mcp-method"], method);
        assert_eq!(headers["mcp-protocol-version"], "2026-07-28");
        assert_eq!(headers["authorization"], "Bearer tok");
        assert!(headers.get("mcp-session-id").is_none());
        let meta = &message["params"]["_meta"];
        assert_eq!(meta["io.modelcontextprotocol/protocolVersion"], "2026-07-28", "{message}");
        assert_eq!(meta["io.modelcontextprotocol/clientInfo"]["name"], "test-host");
        assert!(meta["io.modelcontextprotocol/clientCapabilities"].is_object());
        assert!(ids.insert(message["id"].to_string()), "ids are never reused");
        if method == "tools/call" {
            assert_eq!(headers["mcp-name"], "ok");
            assert_eq!(headers["mcp-param-region"], "eu west 1");
            assert!(headers.get("mcp-param-query").is_none());
        }
    }
    let retry = &received[3].1["params"];
    assert_eq!(retry["inputResponses"]["q"]["action"], "accept");
    assert_eq!(retry["requestState"], "s1 \"opaque\"");
    assert_eq!(retry["arguments"]["region"], "eu west 1");
    host.finish().await.unwrap();
}

#[tokio::test]
async fn legacy_mode_never_probes() {
    let server = Arc::new(McpServer::default());
    let url = listen(mcp_router(server.clone())).await;
    let (host_w, bridge_r) = tokio::io::duplex(1 << 20);
    let (bridge_w, host_r) = tokio::io::duplex(1 << 20);
    let mut opts = BridgeOptions::new(url, Transport::Mcp, json!({}));
    opts.protocol = Protocol::Legacy;
    let mut host = Host {
        stdin: Some(host_w),
        stdout: BufReader::new(host_r).lines(),
        bridge: tokio::spawn(serve(opts, tuning(), bridge_r, bridge_w)),
    };
    host.initialize().await;
    let call = host.request(1, "tools/call", json!({"name": "x"})).await;
    assert_eq!(text(&call), "called");
    let methods: Vec<Value> = server.received.lock().unwrap().iter().map(|m| m["method"].clone()).collect();
    assert_eq!(methods[..3], [json!("initialize"), json!("notifications/initialized"), json!("tools/call")]);
}
