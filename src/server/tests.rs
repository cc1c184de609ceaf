//! The server in process: `router(state)` driven with `oneshot` on a `MemoryStore`, the
//! MCP server being the demo server (this very test binary, re-run as
//! [`demo_server_child`]). Every route's happy path and every error status.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tower::ServiceExt;

use super::{AppState, router};
use crate::config::{Config, ServerConfig};
use crate::session::{SessionId, SessionRecord};
use crate::store::{CasOutcome, MemoryStore, SessionStore, StoreError};

/// Marks the child run of [`demo_server_child`].
const CHILD_VAR: &str = "SWITCHBOARD_TEST_DEMO_CHILD";

/// Not a test: the demo MCP server on stdio when this binary is run by [`demo_server`]
/// (libtest's own lines on stdout are not JSON-RPC, and the gateway skips them).
#[test]
#[ignore = "the demo server of the tests below, run as their child process"]
fn demo_server_child() {
    if std::env::var_os(CHILD_VAR).is_some() {
        use std::io::Write;
        // Ends any line libtest started, so the first JSON-RPC line stands alone.
        std::io::stdout().write_all(b"\n").unwrap();
        crate::demo::run().unwrap();
    }
}

/// This test binary, run as the demo server; `slow_ms` delays every tool call.
fn demo_server(slow_ms: Option<u64>) -> ServerConfig {
    let exe = std::env::current_exe().unwrap().to_string_lossy().into_owned();
    let args =
        ["server::tests::demo_server_child", "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"];
    let mut server = ServerConfig {
        command: std::iter::once(exe).chain(args.map(String::from)).collect(),
        inherit_env: Vec::new(),
        shutdown_grace: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    server.env.insert(CHILD_VAR.into(), "1".into());
    server.env.insert("DEMO_TOKEN".into(), "{credentials.token}".into());
    if let Some(ms) = slow_ms {
        server.env.insert("DEMO_SLOW_MS".into(), ms.to_string());
    }
    server
}

/// A server that cannot be started: `program` is run with no arguments.
fn broken_server(command: Vec<String>) -> ServerConfig {
    ServerConfig { command, inherit_env: Vec::new(), ..ServerConfig::default() }
}

/// The embedded-default config (static token `demo`) with these servers.
fn config(servers: Vec<(&str, ServerConfig)>) -> Config {
    let mut config = Config::load(None, &|_| None, "/unused").unwrap();
    config.servers = servers.into_iter().map(|(name, server)| (name.to_string(), server)).collect();
    config
}

/// A worker in process, and its router.
struct Worker {
    state: AppState,
    app: Router,
}

impl Worker {
    fn new(config: Config) -> Self {
        Self::with_store(config, Arc::new(MemoryStore::new(Arc::new(crate::telemetry::Metrics::new()))))
    }

    fn with_store(config: Config, store: Arc<dyn SessionStore>) -> Self {
        let state =
            AppState::new(config, store, Arc::new(crate::telemetry::Metrics::new()), &|_| None).unwrap();
        Self { app: router(state.clone()), state }
    }

    fn demo() -> Self {
        Self::new(config(vec![("default", demo_server(None))]))
    }

    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer { status, headers, text, json }
    }

    async fn json(&self, method: &str, uri: &str, session: Option<&str>, body: Value) -> Answer {
        self.json_as(None, method, uri, session, body).await
    }

    /// [`Worker::json`] presenting `token` with `Authorization: Bearer`.
    async fn json_as(
        &self,
        token: Option<&str>,
        method: &str,
        uri: &str,
        session: Option<&str>,
        body: Value,
    ) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "localhost:8080")
            .header("content-type", "application/json");
        if let Some(id) = session {
            request = request.header("mcp-session-id", id);
        }
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = if body.is_null() { Body::empty() } else { Body::from(body.to_string()) };
        self.send(request.body(body).unwrap()).await
    }

    async fn init(&self) -> String {
        let answer = self.json("POST", "/init", None, json!({"credentials": {"token": "demo"}})).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        answer.json["session_id"].as_str().unwrap().to_string()
    }

    async fn call(&self, session: &str, body: Value) -> Answer {
        self.json("POST", "/call-tool", Some(session), body).await
    }

    /// Kills and reaps every child left (a timed-out one is still on its ladder).
    async fn finish(self) {
        assert!(self.state.manager.shutdown(Duration::from_secs(10)).await, "children left unreaped");
    }
}

/// A response, read whole.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
    json: Value,
}

impl Answer {
    /// Asserts a JSON error of the HTTP API.
    fn is_error(&self, status: StatusCode, code: &str) {
        assert_eq!((self.status, self.json["error"]["code"].as_str()), (status, Some(code)), "{}", self.text);
    }

    fn retry_after(&self) -> Option<&str> {
        self.headers.get("retry-after").and_then(|v| v.to_str().ok())
    }
}

#[tokio::test]
async fn init_creates_a_session_that_get_session_shows_without_credentials() {
    let worker = Worker::demo();
    let answer = worker.json("POST", "/init", None, json!({"credentials": {"token": "demo"}})).await;
    assert_eq!(answer.status, StatusCode::OK);
    let id = answer.json["session_id"].as_str().unwrap();
    assert_eq!(answer.headers["mcp-session-id"], id);
    assert_eq!(answer.json["idle_ttl_secs"], 86_400);
    let view = worker.json("GET", "/session", Some(id), Value::Null).await;
    assert_eq!(view.status, StatusCode::OK);
    assert_eq!(view.json["session_id"], id);
    assert!(view.json["principal"].as_str().unwrap().starts_with("token:"));
    assert_eq!(view.json["state"], json!({}));
    assert!(!view.text.contains("demo"), "no credential in a view: {}", view.text);
    worker.finish().await;
}

#[tokio::test]
async fn init_refuses_bad_bodies_and_credentials_with_clear_codes() {
    let mut small = config(vec![("default", demo_server(None))]);
    small.max_body_bytes = 64;
    let worker = Worker::new(small);
    let cases: [(&str, StatusCode, &str); 9] = [
        ("", StatusCode::BAD_REQUEST, "bad_request"),
        ("{}", StatusCode::UNAUTHORIZED, "missing_credentials"),
        (r#"{"credentials": {}}"#, StatusCode::UNAUTHORIZED, "missing_credentials"),
        (r#"{"credentials": {"user": "x"}}"#, StatusCode::UNAUTHORIZED, "missing_credentials"),
        ("{", StatusCode::BAD_REQUEST, "bad_request"),
        (r#"{"credentials": {}, "extra": 1}"#, StatusCode::BAD_REQUEST, "bad_request"),
        (r#"{"credentials": 5}"#, StatusCode::BAD_REQUEST, "bad_credentials"),
        (r#"{"credentials": {"token": "nope"}}"#, StatusCode::UNAUTHORIZED, "invalid_credentials"),
        (
            r#"{"credentials": {"token": "this body is longer than sixty-four bytes"}}"#,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
    ];
    for (body, status, code) in cases {
        let request = Request::post("/init")
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        worker.send(request).await.is_error(status, code);
    }
    worker.finish().await;
}

#[tokio::test]
async fn session_routes_need_an_existing_session() {
    let worker = Worker::demo();
    let unknown = SessionId::generate().unwrap();
    for uri in ["/session", "/tools"] {
        worker
            .json("GET", uri, None, Value::Null)
            .await
            .is_error(StatusCode::BAD_REQUEST, "missing_session_id");
        for id in ["not-an-id", unknown.as_str()] {
            worker
                .json("GET", uri, Some(id), Value::Null)
                .await
                .is_error(StatusCode::NOT_FOUND, "session_not_found");
        }
    }
    let answer = worker
        .json("POST", "/call-tool", None, json!({"tool": "echo", "session_id": unknown.as_str()}))
        .await;
    answer.is_error(StatusCode::NOT_FOUND, "session_not_found");
    worker.finish().await;
}

#[tokio::test]
async fn patch_merges_state_and_refuses_non_objects_and_oversized_state() {
    let mut small = config(vec![("default", demo_server(None))]);
    small.max_state_bytes = 32;
    let worker = Worker::new(small);
    let id = worker.init().await;
    let patched = worker.json("PATCH", "/session", Some(&id), json!({"step": 1, "gone": null})).await;
    assert_eq!((patched.status, &patched.json["state"]), (StatusCode::OK, &json!({"step": 1})));
    let again = worker.json("PATCH", "/session", Some(&id), json!({"step": null, "next": "b"})).await;
    assert_eq!(again.json["state"], json!({"next": "b"}));
    worker
        .json("PATCH", "/session", Some(&id), json!([1]))
        .await
        .is_error(StatusCode::BAD_REQUEST, "bad_request");
    let big = json!({"text": "x".repeat(40)});
    worker
        .json("PATCH", "/session", Some(&id), big)
        .await
        .is_error(StatusCode::PAYLOAD_TOO_LARGE, "state_too_large");
    let unknown = SessionId::generate().unwrap();
    let missing = worker.json("PATCH", "/session", Some(unknown.as_str()), json!({"a": 1})).await;
    missing.is_error(StatusCode::NOT_FOUND, "session_not_found");
    worker.finish().await;
}

#[tokio::test]
async fn delete_ends_the_session_everywhere() {
    let worker = Worker::demo();
    let id = worker.init().await;
    let deleted = worker.json("DELETE", "/session", Some(&id), Value::Null).await;
    assert_eq!((deleted.status, deleted.json.clone()), (StatusCode::OK, json!({"deleted": true})));
    worker
        .json("DELETE", "/session", Some(&id), Value::Null)
        .await
        .is_error(StatusCode::NOT_FOUND, "session_not_found");
    worker
        .json("GET", "/session", Some(&id), Value::Null)
        .await
        .is_error(StatusCode::NOT_FOUND, "session_not_found");
    worker.finish().await;
}

#[tokio::test]
async fn tools_and_calls_reach_the_demo_server_and_read_only_results_are_cached() {
    let worker = Worker::demo();
    let id = worker.init().await;
    let tools = worker.json("GET", "/tools", Some(&id), Value::Null).await;
    assert_eq!(tools.status, StatusCode::OK, "{}", tools.text);
    let names: Vec<&str> =
        tools.json["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.contains(&"echo") && names.contains(&"survey_summary"), "{names:?}");
    let echo = json!({"tool": "echo", "arguments": {"text": "hi"}});
    let first = worker.call(&id, echo.clone()).await;
    assert_eq!((first.status, &first.json["cached"]), (StatusCode::OK, &json!(false)), "{}", first.text);
    assert!(first.text.contains("hi"));
    let second = worker.call(&id, echo.clone()).await;
    assert_eq!(second.json["cached"], true, "{}", second.text);
    assert_eq!(second.json["result"]["_meta"]["switchboard/cached"], true);
    let mut bypass = echo;
    bypass["cache"] = json!(false);
    assert_eq!(worker.call(&id, bypass).await.json["cached"], false);
    let metrics = worker.json("GET", "/metrics", None, Value::Null).await.text;
    for op in ["hit", "miss", "bypass", "tools_miss"] {
        assert!(metrics.contains(&format!("switchboard_cache_total{{op=\"{op}\"}} 1")), "{op}: {metrics}");
    }
    worker.finish().await;
}

#[tokio::test]
async fn call_tool_refusals_say_what_is_wrong() {
    let mut denied = demo_server(None);
    denied.deny_tools = vec!["search_feedback".into()];
    let worker = Worker::new(config(vec![("default", denied)]));
    let id = worker.init().await;
    let cases: [(Value, StatusCode, &str); 5] = [
        (json!({"tool": ""}), StatusCode::BAD_REQUEST, "bad_request"),
        (json!({"tool": "echo", "arguments": [1]}), StatusCode::BAD_REQUEST, "bad_request"),
        (json!({"tool": "echo", "bogus": 1}), StatusCode::BAD_REQUEST, "bad_request"),
        (
            json!({"tool": "search_feedback", "arguments": {"query": "x"}}),
            StatusCode::FORBIDDEN,
            "tool_denied",
        ),
        // The server's own -32602 is the caller's mistake, with the server's error attached.
        (json!({"tool": "no_such_tool"}), StatusCode::BAD_REQUEST, "mcp_error"),
    ];
    for (body, status, code) in cases {
        let answer = worker.call(&id, body.clone()).await;
        answer.is_error(status, code);
        if code == "mcp_error" {
            assert_eq!(answer.json["error"]["mcp_error"]["code"], -32602, "{}", answer.text);
        }
    }
    worker.finish().await;
}

#[tokio::test]
async fn with_several_servers_tools_are_namespaced_and_unknown_prefixes_are_404() {
    let worker = Worker::new(config(vec![("a", demo_server(None)), ("b", demo_server(None))]));
    let id = worker.init().await;
    let tools = worker.json("GET", "/tools", Some(&id), Value::Null).await;
    let names: Vec<&str> =
        tools.json["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.contains(&"a.echo") && names.contains(&"b.echo"), "{names:?}");
    let ok = worker.call(&id, json!({"tool": "b.echo", "arguments": {"text": "via b"}})).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    worker.call(&id, json!({"tool": "c.echo"})).await.is_error(StatusCode::NOT_FOUND, "unknown_tool");
    worker.call(&id, json!({"tool": "echo"})).await.is_error(StatusCode::NOT_FOUND, "unknown_tool");
    worker.finish().await;
}

#[tokio::test]
async fn upstream_failures_are_502_and_504() {
    let exe = std::env::current_exe().unwrap().to_string_lossy().into_owned();
    let mut slow = demo_server(Some(10_000));
    slow.call_timeout = Duration::from_millis(300);
    let worker = Worker::new(config(vec![
        ("missing", broken_server(vec!["/nonexistent/switchboard-test-server".into()])),
        // The test binary listing its tests: it exits without answering.
        ("exits", broken_server(vec![exe, "--list".into()])),
        ("slow", slow),
    ]));
    let id = worker.init().await;
    let cases = [
        ("missing.echo", StatusCode::BAD_GATEWAY, "upstream_spawn_failed"),
        ("exits.echo", StatusCode::BAD_GATEWAY, "upstream_exited"),
        ("slow.echo", StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
    ];
    for (tool, status, code) in cases {
        let answer =
            worker.call(&id, json!({"tool": tool, "arguments": {"text": "x"}, "cache": false})).await;
        answer.is_error(status, code);
        if code == "upstream_spawn_failed" {
            let message = answer.json["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("/nonexistent/switchboard-test-server"), "names the command: {message}");
            assert!(message.contains("absolute path"), "says what to do: {message}");
        }
    }
    worker.finish().await;
}

#[tokio::test]
async fn a_saturated_worker_answers_503_with_retry_after() {
    let mut full = config(vec![("default", demo_server(None))]);
    full.max_queue = 0;
    let worker = Worker::new(full);
    let id = worker.init().await;
    let answer = worker.call(&id, json!({"tool": "echo", "arguments": {"text": "x"}})).await;
    answer.is_error(StatusCode::SERVICE_UNAVAILABLE, "saturated");
    assert_eq!(answer.retry_after(), Some("1"));
    // On /mcp the same, as JSON-RPC: here `initialize`, which needs the servers' capabilities.
    let answer = worker.send(mcp_post(None, &rpc("initialize", json!({})))).await;
    assert_eq!((answer.status, answer.retry_after()), (StatusCode::SERVICE_UNAVAILABLE, Some("1")));
    assert_eq!(answer.json["error"]["code"], -32000, "{}", answer.text);
    worker.finish().await;
}

/// A store whose every operation fails as an unreachable Redis would.
struct DownStore;

#[async_trait]
impl SessionStore for DownStore {
    async fn create(&self, _: &SessionId, _: &SessionRecord, _: Duration) -> Result<(), StoreError> {
        Err(down())
    }
    async fn admit(
        &self,
        _: &SessionId,
        _: &SessionRecord,
        _: Duration,
        _: usize,
    ) -> Result<Option<crate::store::Admitted>, StoreError> {
        Err(down())
    }
    async fn take_token(&self, _: &str, _: u64, _: u32, _: u32) -> Result<crate::store::Rate, StoreError> {
        Err(down())
    }
    async fn load(&self, _: &SessionId, _: u64, _: Duration) -> Result<Option<SessionRecord>, StoreError> {
        Err(down())
    }
    async fn load_with_cache(
        &self,
        _: &SessionId,
        _: u64,
        _: Duration,
        _: &str,
    ) -> Result<Option<(SessionRecord, Option<String>)>, StoreError> {
        Err(down())
    }
    async fn cache_get(&self, _: &SessionId, _: &str) -> Result<Option<String>, StoreError> {
        Err(down())
    }
    async fn cache_put(
        &self,
        _: &SessionId,
        _: &str,
        _: &str,
        _: u64,
        _: Duration,
        _: usize,
    ) -> Result<(), StoreError> {
        Err(down())
    }
    async fn log_activity(&self, _: &SessionId, _: &str, _: Duration) -> Result<(), StoreError> {
        Err(down())
    }
    async fn try_lock(&self, _: &SessionId, _: &str, _: Duration) -> Result<bool, StoreError> {
        Err(down())
    }
    async fn unlock(&self, _: &SessionId, _: &str) -> Result<(), StoreError> {
        Err(down())
    }
    async fn replace_state(
        &self,
        _: &SessionId,
        _: u64,
        _: &str,
        _: u64,
        _: Duration,
    ) -> Result<CasOutcome, StoreError> {
        Err(down())
    }
    async fn set_field(
        &self,
        _: &SessionId,
        _: &str,
        _: &str,
        _: u64,
        _: Duration,
    ) -> Result<bool, StoreError> {
        Err(down())
    }
    async fn delete(&self, _: &SessionId) -> Result<bool, StoreError> {
        Err(down())
    }
    async fn get_shared(&self, _: &str) -> Result<Option<String>, StoreError> {
        Err(down())
    }
    async fn put_shared(&self, _: &str, _: &str, _: Duration) -> Result<(), StoreError> {
        Err(down())
    }
    async fn publish(&self, _: &str, _: &str) -> Result<(), StoreError> {
        Err(down())
    }
    fn subscribe(&self, _: Vec<String>, _: mpsc::Sender<(String, String)>) {}
    async fn ping(&self) -> Result<(), StoreError> {
        Err(down())
    }
    fn describe(&self) -> String {
        "down".into()
    }
}

fn down() -> StoreError {
    StoreError::Unavailable("connection refused".into())
}

#[tokio::test]
async fn a_store_that_is_down_is_a_503_with_retry_after_and_not_ready() {
    let worker = Worker::with_store(config(vec![("default", demo_server(None))]), Arc::new(DownStore));
    let init = worker.json("POST", "/init", None, json!({"credentials": {"token": "demo"}})).await;
    init.is_error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
    assert_eq!(init.retry_after(), Some("1"));
    assert!(!init.text.contains("connection refused"), "store internals stay inside: {}", init.text);
    let id = SessionId::generate().unwrap();
    let get = worker.json("GET", "/session", Some(id.as_str()), Value::Null).await;
    get.is_error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
    let ready = worker.json("GET", "/readyz", None, Value::Null).await;
    assert_eq!((ready.status, ready.json["ready"].clone()), (StatusCode::SERVICE_UNAVAILABLE, json!(false)));
    let mcp = worker.send(mcp_post(Some(id.as_str()), &rpc("tools/list", json!({})))).await;
    assert_eq!((mcp.status, mcp.retry_after()), (StatusCode::SERVICE_UNAVAILABLE, Some("1")), "{}", mcp.text);
    assert_eq!(mcp.json["error"]["code"], -32000);
    worker.finish().await;
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let worker = Worker::demo();
    worker.json("GET", "/nope", None, Value::Null).await.is_error(StatusCode::NOT_FOUND, "not_found");
    let get_init = worker.json("GET", "/init", None, Value::Null).await;
    get_init.is_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(get_init.headers["allow"], "POST", "{}", get_init.text);
    let get =
        worker.send(Request::get("/mcp").header("host", "localhost").body(Body::empty()).unwrap()).await;
    assert_eq!(
        (get.status, get.headers["allow"].to_str().unwrap()),
        (StatusCode::METHOD_NOT_ALLOWED, "POST, DELETE")
    );
    let body: Value = serde_json::from_str(&get.text).unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
    worker.finish().await;
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let worker = Worker::demo();
    let health = worker.json("GET", "/healthz", None, Value::Null).await;
    assert_eq!((health.status, health.json.clone()), (StatusCode::OK, json!({"status": "ok"})));
    let ready = worker.json("GET", "/readyz", None, Value::Null).await;
    assert_eq!(
        (ready.status, ready.json.clone()),
        (StatusCode::OK, json!({"ready": true, "draining": false}))
    );
    let metrics = worker.json("GET", "/metrics", None, Value::Null).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics.text.contains(r#"switchboard_http_requests_total{route="/healthz",status="200"} 1"#),
        "{}",
        metrics.text
    );
    assert!(metrics.headers.contains_key("x-request-id"));
    worker.finish().await;
}

#[tokio::test]
async fn every_route_checks_origin_and_host_on_a_loopback_listener() {
    let worker = Worker::demo();
    let init = || {
        Request::post("/init")
            .header("host", "localhost:8080")
            .header("content-type", "application/json")
            .body(Body::from(json!({"credentials": {"token": "demo"}}).to_string()))
            .unwrap()
    };
    let with = |name: &'static str, value: &str| {
        let mut request = init();
        request.headers_mut().insert(name, value.parse().unwrap());
        request
    };
    let origin = worker.send(with("origin", "https://evil.example")).await;
    origin.is_error(StatusCode::FORBIDDEN, "origin_not_allowed");
    let host = worker.send(with("host", "evil.example:8080")).await;
    host.is_error(StatusCode::MISDIRECTED_REQUEST, "host_not_allowed");
    for path in ["/session", "/tools", "/healthz", "/metrics", "/nope"] {
        let request = Request::get(path).header("host", "evil.example").body(Body::empty()).unwrap();
        let answer = worker.send(request).await;
        answer.is_error(StatusCode::MISDIRECTED_REQUEST, "host_not_allowed");
    }
    for allowed in ["http://localhost:3000", "http://127.0.0.1", "http://[::1]:9"] {
        assert_eq!(worker.send(with("origin", allowed)).await.status, StatusCode::OK, "{allowed}");
    }
    for host in ["127.0.0.1:8080", "[::1]:8080", "localhost"] {
        assert_eq!(worker.send(with("host", host)).await.status, StatusCode::OK, "{host}");
    }
    let metrics = worker.json("GET", "/metrics", None, Value::Null).await.text;
    assert!(metrics.contains(r#"switchboard_refusals_total{reason="host"} 6"#), "{metrics}");
    worker.finish().await;
}

#[tokio::test]
async fn allowed_origins_and_hosts_extend_the_loopback_ones_and_host_is_free_beyond_loopback() {
    let mut listed = config(vec![("default", demo_server(None))]);
    listed.http.allowed_origins = vec!["https://app.example".into()];
    listed.http.allowed_hosts = vec!["gateway.example".into()];
    let worker = Worker::new(listed);
    let request = |origin: &str, host: &str| {
        Request::get("/healthz").header("origin", origin).header("host", host).body(Body::empty()).unwrap()
    };
    let ok = worker.send(request("https://app.example", "gateway.example:443")).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    let other = worker.send(request("https://other.example", "gateway.example")).await;
    other.is_error(StatusCode::FORBIDDEN, "origin_not_allowed");
    worker.finish().await;

    let mut public = config(vec![("default", demo_server(None))]);
    public.listen = "0.0.0.0:8080".parse().unwrap();
    let worker = Worker::new(public);
    let any_host = Request::get("/healthz").header("host", "gateway.example").body(Body::empty()).unwrap();
    assert_eq!(worker.send(any_host).await.status, StatusCode::OK);
    let evil = Request::get("/healthz").header("origin", "https://evil.example").body(Body::empty()).unwrap();
    worker.send(evil).await.is_error(StatusCode::FORBIDDEN, "origin_not_allowed");
    worker.finish().await;
}

#[tokio::test]
async fn posts_and_patches_need_a_json_content_type() {
    let worker = Worker::demo();
    let post = |content_type: Option<&str>| {
        let mut request = Request::post("/init").header("host", "localhost");
        if let Some(value) = content_type {
            request = request.header("content-type", value);
        }
        request.body(Body::from(json!({"credentials": {"token": "demo"}}).to_string())).unwrap()
    };
    for refused in
        [Some("text/plain"), Some("application/x-www-form-urlencoded"), None, Some("application/jsonx")]
    {
        let answer = worker.send(post(refused)).await;
        answer.is_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
        let message = answer.json["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("application/json"), "names what to send: {}", answer.text);
    }
    for accepted in ["application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8"]
    {
        assert_eq!(worker.send(post(Some(accepted))).await.status, StatusCode::OK, "{accepted}");
    }
    let session = worker.init().await;
    let patch = Request::patch("/session")
        .header("host", "localhost")
        .header("mcp-session-id", &session)
        .header("content-type", "text/plain")
        .body(Body::from("{}"))
        .unwrap();
    worker.send(patch).await.is_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let delete = Request::delete("/session")
        .header("host", "localhost")
        .header("mcp-session-id", &session)
        .body(Body::empty())
        .unwrap();
    assert_eq!(worker.send(delete).await.status, StatusCode::OK, "a DELETE has no body to type");
    worker.finish().await;
}

#[tokio::test]
async fn the_demo_token_is_refused_when_the_worker_listens_beyond_loopback() {
    let mut public = config(vec![("default", demo_server(None))]);
    public.listen = "0.0.0.0:8080".parse().unwrap();
    assert!(public.refuses_demo_token());
    let worker = Worker::new(public);
    let init = worker.json("POST", "/init", None, json!({"credentials": {"token": "demo"}})).await;
    init.is_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    worker.finish().await;

    let mut public_with_tokens = config(vec![("default", demo_server(None))]);
    public_with_tokens.listen = "[::]:8080".parse().unwrap();
    public_with_tokens.auth.static_tokens = vec!["demo".into(), "s3cret-token".into()];
    let worker = Worker::new(public_with_tokens);
    let demo = worker.json("POST", "/init", None, json!({"credentials": {"token": "demo"}})).await;
    demo.is_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let real = worker.json("POST", "/init", None, json!({"credentials": {"token": "s3cret-token"}})).await;
    assert_eq!(real.status, StatusCode::OK, "{}", real.text);
    worker.finish().await;
}

// ---------------------------------------------------------------------------------------
// /mcp

/// A JSON-RPC request with id 1.
fn rpc(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string()
}

/// A well-formed POST to `/mcp` (loopback Host, both types accepted, the demo token).
fn mcp_request(session: Option<&str>) -> axum::http::request::Builder {
    let mut request = Request::post("/mcp")
        .header("host", "localhost:8080")
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("authorization", "Bearer demo");
    if let Some(id) = session {
        request = request.header("mcp-session-id", id);
    }
    request
}

fn mcp_post(session: Option<&str>, body: &str) -> Request<Body> {
    mcp_request(session).body(Body::from(body.to_string())).unwrap()
}

/// A session on `/mcp`.
struct Mcp {
    session: String,
}

impl Mcp {
    async fn start(worker: &Worker) -> Self {
        let params = json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}});
        let answer = worker.send(mcp_post(None, &rpc("initialize", params))).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        assert_eq!(answer.json["result"]["protocolVersion"], "2025-06-18");
        let session = answer.headers["mcp-session-id"].to_str().unwrap().to_string();
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string();
        assert_eq!(worker.send(mcp_post(Some(&session), &note)).await.status, StatusCode::ACCEPTED);
        Self { session }
    }

    async fn request(&self, worker: &Worker, method: &str, params: Value) -> Answer {
        worker.send(mcp_post(Some(&self.session), &rpc(method, params))).await
    }
}

#[tokio::test]
async fn mcp_initialize_list_call_ping_and_delete() {
    let worker = Worker::demo();
    let mcp = Mcp::start(&worker).await;
    let list = mcp.request(&worker, "tools/list", json!({})).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    assert!(list.json["result"]["tools"].as_array().unwrap().iter().any(|t| t["name"] == "echo"));
    let call =
        mcp.request(&worker, "tools/call", json!({"name": "echo", "arguments": {"text": "over mcp"}})).await;
    assert_eq!((call.status, call.json["id"].clone()), (StatusCode::OK, json!(1)), "{}", call.text);
    assert!(call.text.contains("over mcp"));
    let ping = mcp.request(&worker, "ping", json!({})).await;
    assert_eq!(ping.json, json!({"jsonrpc": "2.0", "id": 1, "result": {}}));
    let level = mcp.request(&worker, "logging/setLevel", json!({"level": "warning"})).await;
    assert_eq!(level.json["result"], json!({}));
    let bad_level = mcp.request(&worker, "logging/setLevel", json!({"level": "loud"})).await;
    assert_eq!((bad_level.status, bad_level.json["error"]["code"].clone()), (StatusCode::OK, json!(-32602)));
    let delete = Request::delete("/mcp")
        .header("host", "localhost")
        .header("authorization", "Bearer demo")
        .header("mcp-session-id", &mcp.session);
    assert_eq!(worker.send(delete.body(Body::empty()).unwrap()).await.status, StatusCode::OK);
    assert_eq!(mcp.request(&worker, "tools/list", json!({})).await.status, StatusCode::NOT_FOUND);
    worker.finish().await;
}

#[tokio::test]
async fn mcp_errors_of_a_request_are_json_rpc_answers() {
    let worker = Worker::demo();
    let mcp = Mcp::start(&worker).await;
    // The server's own error passes through untouched; the gateway's are -32602.
    let unknown = mcp.request(&worker, "tools/call", json!({"name": "no_such_tool", "arguments": {}})).await;
    assert_eq!((unknown.status, unknown.json["error"]["code"].clone()), (StatusCode::OK, json!(-32602)));
    let nameless = mcp.request(&worker, "tools/call", json!({"arguments": {}})).await;
    assert_eq!(nameless.json["error"], json!({"code": -32602, "message": "tools/call needs a name"}));
    worker.finish().await;
}

#[tokio::test]
async fn mcp_streams_what_the_server_sends_before_its_result_as_sse() {
    let worker = Worker::new(config(vec![("default", demo_server(Some(250)))]));
    let mcp = Mcp::start(&worker).await;
    let params = json!({"name": "echo", "arguments": {"text": "slow"}, "_meta": {"progressToken": "p1"}});
    let answer = mcp.request(&worker, "tools/call", params).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.headers["content-type"].to_str().unwrap().starts_with("text/event-stream"),
        "{:?}",
        answer.headers
    );
    let events: Vec<Value> = answer
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect();
    let (last, before) = events.split_last().unwrap();
    assert!(
        !before.is_empty() && before.iter().all(|e| e["method"] == "notifications/progress"),
        "{events:?}"
    );
    assert_eq!(last["id"], 1);
    assert!(last["result"].to_string().contains("slow"), "{last}");
    worker.finish().await;
}

#[tokio::test]
async fn mcp_transport_refusals_have_their_status_and_json_rpc_code() {
    let mut small = config(vec![("default", demo_server(None))]);
    small.max_body_bytes = 512;
    let worker = Worker::new(small);
    let mcp = Mcp::start(&worker).await;
    let list = rpc("tools/list", json!({}));
    let session = Some(mcp.session.as_str());
    let unknown = SessionId::generate().unwrap();
    let cases: Vec<(&str, Request<Body>, StatusCode, i64)> = vec![
        ("origin", with(session, "origin", "https://evil.example"), StatusCode::FORBIDDEN, -32000),
        ("host", with(session, "host", "evil.example"), StatusCode::MISDIRECTED_REQUEST, -32000),
        ("accept", with(session, "accept", "application/json"), StatusCode::NOT_ACCEPTABLE, -32000),
        (
            "content type",
            with(session, "content-type", "text/plain"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            -32000,
        ),
        ("version", with(session, "mcp-protocol-version", "1999-01-01"), StatusCode::BAD_REQUEST, -32000),
        ("too large", mcp_post(session, &"x".repeat(600)), StatusCode::PAYLOAD_TOO_LARGE, -32000),
        ("not JSON", mcp_post(session, "{"), StatusCode::BAD_REQUEST, -32700),
        ("not JSON-RPC", mcp_post(session, "{}"), StatusCode::BAD_REQUEST, -32600),
        ("no session", mcp_post(None, &list), StatusCode::BAD_REQUEST, -32600),
        ("unknown session", mcp_post(Some(unknown.as_str()), &list), StatusCode::NOT_FOUND, -32000),
        ("other principal", with(session, "authorization", "Bearer other"), StatusCode::NOT_FOUND, -32000),
        ("batch", mcp_post(session, &format!("[{list}]")), StatusCode::BAD_REQUEST, -32600),
        (
            "initialize again",
            mcp_post(session, &rpc("initialize", json!({}))),
            StatusCode::BAD_REQUEST,
            -32600,
        ),
    ];
    for (what, request, status, code) in cases {
        let answer = worker.send(request).await;
        assert_eq!(
            (answer.status, answer.json["error"]["code"].as_i64()),
            (status, Some(code)),
            "{what}: {}",
            answer.text
        );
        assert_eq!(answer.json["jsonrpc"], "2.0", "{what}");
    }
    let mut init = mcp_post(None, &rpc("initialize", json!({})));
    init.headers_mut().insert("authorization", "Bearer nope".parse().unwrap());
    let refused = worker.send(init).await;
    assert_eq!(
        (refused.status, refused.json["error"]["code"].as_i64()),
        (StatusCode::UNAUTHORIZED, Some(-32000)),
        "{}",
        refused.text
    );
    let mut bare = mcp_post(None, &rpc("initialize", json!({})));
    bare.headers_mut().remove("authorization");
    let bare = worker.send(bare).await;
    assert_eq!(bare.status, StatusCode::UNAUTHORIZED, "{}", bare.text);
    let message = bare.json["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("Authorization: Bearer"), "the answer names the header: {}", bare.text);
    let metrics = worker.json("GET", "/metrics", None, Value::Null).await.text;
    assert!(metrics.contains(r#"switchboard_refusals_total{reason="origin"} 1"#), "{metrics}");
    worker.finish().await;
}

/// A `tools/list` on `/mcp` with one header replaced (or added).
fn with(session: Option<&str>, name: &'static str, value: &str) -> Request<Body> {
    let mut request = mcp_post(session, &rpc("tools/list", json!({})));
    request.headers_mut().insert(name, value.parse().unwrap());
    request
}

/// A worker with the demo server and these limits changed.
fn limited(change: impl FnOnce(&mut crate::config::LimitsConfig)) -> Worker {
    let mut config = config(vec![("default", demo_server(None))]);
    change(&mut config.limits);
    Worker::new(config)
}

/// `switchboard_refusals_total{reason}` of the worker.
async fn refusals(worker: &Worker, reason: &str) -> u64 {
    let metrics = worker.json("GET", "/metrics", None, Value::Null).await.text;
    let sample = format!("switchboard_refusals_total{{reason=\"{reason}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(sample.as_str())?.trim().parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn credentials_and_client_over_their_limits_are_refused_naming_the_limit() {
    let worker = limited(|l| {
        l.max_credentials_bytes = 100;
        l.max_client_bytes = 50;
    });
    let big = "x".repeat(200);
    let answer =
        worker.json("POST", "/init", None, json!({"credentials": {"token": "demo", "extra": big}})).await;
    answer.is_error(StatusCode::PAYLOAD_TOO_LARGE, "credentials_too_large");
    assert!(answer.text.contains("100 bytes"), "names the limit: {}", answer.text);
    let answer = worker
        .json("POST", "/init", None, json!({"credentials": {"token": "demo"}, "client": {"name": big}}))
        .await;
    answer.is_error(StatusCode::BAD_REQUEST, "client_too_large");
    assert!(answer.text.contains("50 bytes"), "names the limit: {}", answer.text);
    // On /mcp, what `initialize` keeps of the client is bounded the same way.
    let params = json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": big}});
    let answer = worker.send(mcp_post(None, &rpc("initialize", params))).await;
    assert_eq!(
        (answer.status, answer.json["error"]["code"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(-32000))
    );
    assert!(answer.text.contains("limits.max_client_bytes"), "{}", answer.text);
    // Within the limits all is as before.
    worker.init().await;
    assert_eq!(refusals(&worker, "credentials_too_large").await, 1);
    assert_eq!(refusals(&worker, "client_too_large").await, 2);
    worker.finish().await;
}

#[tokio::test]
async fn a_principal_over_its_rate_gets_429_with_retry_after_and_others_do_not() {
    let mut config = config(vec![("default", demo_server(None))]);
    config.auth.static_tokens = vec!["demo".into(), "other".into()];
    // One request a second after a burst of three: a quick run of requests meets the limit.
    config.limits.requests_per_sec = 1;
    config.limits.burst = 3;
    let worker = Worker::new(config);
    let id = worker.init().await;
    let mut refused = None;
    for _ in 0..50 {
        let answer = worker.json("GET", "/session", Some(&id), Value::Null).await;
        if answer.status != StatusCode::OK {
            refused = Some(answer);
            break;
        }
    }
    let refused = refused.expect("a run of 50 requests meets a rate of 1/s with a burst of 3");
    refused.is_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(refused.retry_after(), Some("1"));
    let refused = worker.call(&id, json!({"tool": "echo", "arguments": {"text": "x"}})).await;
    refused.is_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let refused = worker.json("POST", "/init", None, json!({"credentials": {"token": "demo"}})).await;
    refused.is_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // On /mcp: the same status and Retry-After, as a JSON-RPC error.
    let refused = worker.send(mcp_post(Some(&id), &rpc("tools/list", json!({})))).await;
    assert_eq!(
        (refused.status, refused.json["error"]["code"].as_i64()),
        (StatusCode::TOO_MANY_REQUESTS, Some(-32000))
    );
    assert!(refused.retry_after().is_some(), "{:?}", refused.headers);
    // Another principal has its own bucket.
    let other = worker.json("POST", "/init", None, json!({"credentials": {"token": "other"}})).await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.text);
    assert_eq!(refusals(&worker, "rate_limited").await, 4);
    worker.finish().await;
}

/// The demo server with the static tokens `demo` and `other`.
fn two_principals() -> Config {
    let mut config = config(vec![("default", demo_server(None))]);
    config.auth.static_tokens = vec!["demo".into(), "other".into()];
    config
}

/// Every legacy session route, as (method, uri, body).
fn legacy_routes(session: &str) -> [(&'static str, &'static str, Value); 5] {
    [
        ("GET", "/session", Value::Null),
        ("GET", "/tools", Value::Null),
        ("POST", "/call-tool", json!({"tool": "echo", "arguments": {"text": "x"}, "session_id": session})),
        ("PATCH", "/session", json!({"taken": true})),
        ("DELETE", "/session", Value::Null),
    ]
}

#[tokio::test]
async fn the_legacy_door_refuses_another_principals_token_like_an_unknown_session() {
    let worker = Worker::new(two_principals());
    let id = worker.init().await;
    for (method, uri, body) in legacy_routes(&id) {
        let answer = worker.json_as(Some("other"), method, uri, Some(&id), body).await;
        answer.is_error(StatusCode::NOT_FOUND, "session_not_found");
    }
    // Untouched by the refused PATCH and DELETE; its own token and the id alone still open it.
    let view = worker.json_as(Some("demo"), "GET", "/session", Some(&id), Value::Null).await;
    assert_eq!((view.status, &view.json["state"]), (StatusCode::OK, &json!({})), "{}", view.text);
    let seed = worker.json("PATCH", "/session", Some(&id), json!({"step": 1})).await;
    assert_eq!((seed.status, &seed.json["state"]), (StatusCode::OK, &json!({"step": 1})), "{}", seed.text);
    let call =
        worker.json_as(Some("demo"), "POST", "/call-tool", Some(&id), legacy_routes(&id)[2].2.clone()).await;
    assert_eq!(call.status, StatusCode::OK, "{}", call.text);
    worker.finish().await;
}

/// Returns once the wall clock's millisecond has moved on (bounded: a few milliseconds).
async fn next_millisecond() {
    let start = crate::session::now_ms();
    for _ in 0..1000 {
        if crate::session::now_ms() > start {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_micros(200)).await;
    }
}

#[tokio::test]
async fn a_principal_at_its_session_quota_keeps_working_and_its_idlest_session_makes_room() {
    let worker = limited(|l| l.sessions_per_principal = 2);
    let first = worker.init().await;
    next_millisecond().await;
    let second = worker.init().await;
    // The first is used again: the second is now the least recently used (last-seen times
    // are milliseconds: each step waits for the next one, so the order is never a tie).
    next_millisecond().await;
    assert_eq!(worker.json("GET", "/session", Some(&first), Value::Null).await.status, StatusCode::OK);
    next_millisecond().await;
    let third = worker.init().await;
    let gone = worker.json("GET", "/session", Some(&second), Value::Null).await;
    gone.is_error(StatusCode::NOT_FOUND, "session_not_found");
    for id in [&first, &third] {
        assert_eq!(worker.json("GET", "/session", Some(id), Value::Null).await.status, StatusCode::OK);
    }
    let metrics = worker.json("GET", "/metrics", None, Value::Null).await.text;
    assert!(
        metrics.contains(r#"switchboard_session_evictions_total{reason="principal_quota"} 1"#),
        "{metrics}"
    );
    worker.finish().await;
}

#[tokio::test]
async fn an_mcp_session_opens_on_the_legacy_door_only_with_its_token() {
    let worker = Worker::new(two_principals());
    let mcp = Mcp::start(&worker).await;
    let id = mcp.session.as_str();
    for token in [None, Some("other")] {
        for (method, uri, body) in legacy_routes(id) {
            let answer = worker.json_as(token, method, uri, Some(id), body).await;
            answer.is_error(StatusCode::NOT_FOUND, "session_not_found");
        }
    }
    let view = worker.json_as(Some("demo"), "GET", "/session", Some(id), Value::Null).await;
    assert_eq!((view.status, &view.json["state"]), (StatusCode::OK, &json!({})), "{}", view.text);
    assert_eq!(view.json["protocol_version"], "2025-06-18");
    assert_eq!(mcp.request(&worker, "ping", json!({})).await.status, StatusCode::OK);
    worker.finish().await;
}

#[tokio::test]
async fn with_require_principal_the_session_id_alone_opens_nothing() {
    let mut strict = two_principals();
    strict.auth.require_principal = true;
    let worker = Worker::new(strict);
    let id = worker.init().await;
    for (method, uri, body) in legacy_routes(&id) {
        worker.json(method, uri, Some(&id), body).await.is_error(StatusCode::NOT_FOUND, "session_not_found");
    }
    let view = worker.json_as(Some("demo"), "GET", "/session", Some(&id), Value::Null).await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.text);
    worker.finish().await;
}

#[tokio::test]
async fn without_auth_a_tokenless_mcp_session_stays_on_mcp_and_a_token_binds_one() {
    let mut open = config(vec![("default", demo_server(None))]);
    open.auth.mode = Some(crate::config::AuthMode::None);
    let worker = Worker::new(open);
    let initialize = rpc("initialize", json!({"protocolVersion": "2025-06-18", "capabilities": {}}));
    let mut bare = mcp_post(None, &initialize);
    bare.headers_mut().remove("authorization");
    let answer = worker.send(bare).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let id = answer.headers["mcp-session-id"].to_str().unwrap().to_string();
    let mut ping = mcp_post(Some(&id), &rpc("ping", json!({})));
    ping.headers_mut().remove("authorization");
    assert_eq!(worker.send(ping).await.status, StatusCode::OK, "bound to nobody: the id opens it on /mcp");
    let legacy = worker.json("GET", "/session", Some(&id), Value::Null).await;
    legacy.is_error(StatusCode::NOT_FOUND, "session_not_found");
    assert_eq!(legacy.status, StatusCode::NOT_FOUND);
    // A session opened with a token (any token, in this mode) is bound to it.
    let tokened = Mcp::start(&worker).await;
    let mut other = mcp_post(Some(&tokened.session), &rpc("ping", json!({})));
    other.headers_mut().insert("authorization", "Bearer other".parse().unwrap());
    assert_eq!(worker.send(other).await.status, StatusCode::NOT_FOUND);
    let mut none = mcp_post(Some(&tokened.session), &rpc("ping", json!({})));
    none.headers_mut().remove("authorization");
    assert_eq!(worker.send(none).await.status, StatusCode::NOT_FOUND);
    worker.finish().await;
}

#[tokio::test]
async fn the_identity_opens_from_its_sealed_field_and_older_plain_records_still_read() {
    let worker = Worker::demo();
    let gateway = &worker.state;
    let id = SessionId::generate().unwrap();
    let created = worker.init().await;
    let mut record = gateway.load_session(&SessionId::parse(&created).unwrap()).await.unwrap();
    assert_eq!((record.identity.clone(), record.sealed_identity.clone()), (Value::Null, None));
    record.identity = json!({"sub": "old"});
    assert_eq!(gateway.identity(&id, &record).unwrap(), json!({"sub": "old"}), "an earlier release's record");
    let sealed = gateway.sealer.seal(br#"{"sub":"new"}"#, &format!("{}.identity", id.as_str())).unwrap();
    record.sealed_identity = Some(sealed.clone());
    assert_eq!(gateway.identity(&id, &record).unwrap(), json!({"sub": "new"}), "the sealed field wins");
    let elsewhere = SessionId::generate().unwrap();
    assert!(gateway.identity(&elsewhere, &record).is_err(), "bound to its session");
    let as_credentials = gateway.sealer.seal(br#"{"sub":"new"}"#, id.as_str()).unwrap();
    record.sealed_identity = Some(as_credentials);
    assert!(gateway.identity(&id, &record).is_err(), "never opened as the credentials are");
    worker.finish().await;
}

// ---------------------------------------------------------------------------------------
// auth mode oauth: the metadata and the challenges (token validation: auth::tests, tests/it)

#[tokio::test]
async fn oauth_mode_publishes_resource_metadata_and_challenges_a_missing_token() {
    let mut oauth = config(vec![("default", demo_server(None))]);
    oauth.auth.mode = Some(crate::config::AuthMode::OAuth);
    oauth.auth.issuer = Some("http://127.0.0.1:9/issuer".into());
    oauth.auth.audience = Some("https://gw.example.com/v1/mcp".into());
    oauth.auth.required_scopes = vec!["mcp".into()];
    let worker = Worker::new(oauth);
    for uri in ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/v1/mcp"] {
        let request = Request::get(uri).header("host", "localhost").header("origin", "https://app.example");
        let answer = worker.send(request.body(Body::empty()).unwrap()).await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}: {}", answer.text);
        assert_eq!(answer.json["resource"], "https://gw.example.com/v1/mcp");
        assert_eq!(answer.json["authorization_servers"], json!(["http://127.0.0.1:9/issuer"]));
        assert_eq!(answer.json["scopes_supported"], json!(["mcp"]));
        assert_eq!(answer.headers["access-control-allow-origin"], "*");
    }
    let expected = r#"Bearer resource_metadata="https://gw.example.com/.well-known/oauth-protected-resource/v1/mcp", scope="mcp""#;
    let mut bare =
        mcp_post(None, &rpc("initialize", json!({"protocolVersion": "2025-11-25", "capabilities": {}})));
    bare.headers_mut().remove("authorization");
    let answer = worker.send(bare).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text);
    assert_eq!(answer.headers["www-authenticate"], expected);
    assert_eq!(answer.json["error"]["code"], -32000, "JSON-RPC on /mcp");
    let legacy = worker.json("GET", "/tools", Some("x"), Value::Null).await;
    legacy.is_error(StatusCode::UNAUTHORIZED, "missing_credentials");
    assert_eq!(legacy.headers["www-authenticate"], expected);
    // Health and metrics stay open.
    assert_eq!(worker.json("GET", "/healthz", None, Value::Null).await.status, StatusCode::OK);
    worker.finish().await;
}

#[tokio::test]
async fn other_modes_have_no_resource_metadata_and_send_no_challenge() {
    let worker = Worker::demo();
    let answer = worker.json("GET", "/.well-known/oauth-protected-resource/mcp", None, Value::Null).await;
    answer.is_error(StatusCode::NOT_FOUND, "not_found");
    let refused = worker.json("POST", "/init", None, json!({"credentials": {"token": "nope"}})).await;
    refused.is_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert!(refused.headers.get("www-authenticate").is_none());
    worker.finish().await;
}
