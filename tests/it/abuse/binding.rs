//! Abuse findings: binding. A session id alone opened the legacy door whatever token came
//! with it, also for sessions made on `/mcp`; a missing token equalled another missing one.
//! Now a session refuses another principal's token (404, like an unknown session), an
//! `/mcp` session needs its bearer token on the legacy door, and the seed's API (the id
//! alone, on `/init` sessions) works until `auth.require_principal` turns it off.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

/// A worker on `redis` accepting the tokens `demo` and `other`.
fn worker(redis: &Redis, extra: &[(&str, &str)]) -> Worker {
    let mut env = vec![("SWITCHBOARD_AUTH_STATIC_TOKENS", "demo,other")];
    env.extend_from_slice(extra);
    Worker::with_redis(redis, &env)
}

/// One legacy request on `session`, presenting `token` if any: its status and JSON body.
async fn legacy(
    client: &reqwest::Client,
    worker: &Worker,
    token: Option<&str>,
    (method, path, body): (Method, &str, Value),
    session: &str,
) -> (StatusCode, Value) {
    let mut request = client.request(method, worker.url(path)).header("Mcp-Session-Id", session);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if !body.is_null() {
        request = request.json(&body);
    }
    let response = request.send().await.expect("legacy request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Every legacy route that takes a session.
fn routes() -> Vec<(Method, &'static str, Value)> {
    vec![
        (Method::GET, "/tools", Value::Null),
        (Method::POST, "/call-tool", json!({"tool": "echo", "arguments": {"text": "hi"}})),
        (Method::GET, "/session", Value::Null),
        (Method::PATCH, "/session", json!({"owner": "mallory"})),
        (Method::DELETE, "/session", Value::Null),
    ]
}

/// Every route refuses `token` on `session` with 404 `session_not_found`.
async fn all_refused(client: &reqwest::Client, worker: &Worker, token: Option<&str>, session: &str) {
    for route in routes() {
        let what = format!("{} {} with {token:?}", route.0, route.1);
        let (status, body) = legacy(client, worker, token, route, session).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{what}: {body}");
        assert_eq!(body["error"]["code"], "session_not_found", "{what}: {body}");
    }
}

/// `initialize` on `/mcp` with `token`; the session id.
async fn mcp_session(client: &reqwest::Client, worker: &Worker, token: &str) -> String {
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let response = client
        .post(worker.url("/mcp"))
        .header("Accept", "application/json, text/event-stream")
        .bearer_auth(token)
        .json(&initialize)
        .send()
        .await
        .expect("initialize");
    assert_eq!(response.status(), 200);
    response.headers()["mcp-session-id"].to_str().expect("session id").to_string()
}

async fn state_of(client: &reqwest::Client, worker: &Worker, token: &str, session: &str) -> Value {
    let get = (Method::GET, "/session", Value::Null);
    let (status, view) = legacy(client, worker, Some(token), get, session).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    view["state"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn another_principals_token_finds_no_session_on_any_legacy_route() {
    let redis = Redis::start();
    let worker = worker(&redis, &[]);
    let client = http();
    let session = init(&client, &worker).await;
    let patch = (Method::PATCH, "/session", json!({"step": 1}));
    assert_eq!(legacy(&client, &worker, Some("demo"), patch, &session).await.0, StatusCode::OK);
    all_refused(&client, &worker, Some("other"), &session).await;
    // The refused PATCH and DELETE changed nothing.
    assert_eq!(state_of(&client, &worker, "demo", &session).await, json!({"step": 1}));
    // Its own token, and the id alone (the seed's API, on an /init session), still work.
    for token in [Some("demo"), None] {
        for route in routes().into_iter().take(3) {
            let what = format!("{} {} with {token:?}", route.0, route.1);
            let (status, body) = legacy(&client, &worker, token, route, &session).await;
            assert_eq!(status, StatusCode::OK, "{what}: {body}");
        }
    }
    let other = init_with(&client, &worker, json!({"token": "other"})).await;
    assert_eq!(state_of(&client, &worker, "other", &other).await, json!({}), "the worker keeps serving");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_mcp_session_is_not_usable_on_the_legacy_door_without_its_token() {
    let redis = Redis::start();
    let worker = worker(&redis, &[]);
    let client = http();
    let session = mcp_session(&client, &worker, "demo").await;
    all_refused(&client, &worker, None, &session).await;
    all_refused(&client, &worker, Some("other"), &session).await;
    assert_eq!(state_of(&client, &worker, "demo", &session).await, json!({}));
    for route in routes() {
        let what = format!("{} {}", route.0, route.1);
        let (status, body) = legacy(&client, &worker, Some("demo"), route, &session).await;
        assert_eq!(status, StatusCode::OK, "{what} with its own token: {body}");
    }
    // DELETE (the last route) ended it.
    all_refused(&client, &worker, Some("demo"), &session).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_require_principal_the_session_id_alone_opens_nothing() {
    let redis = Redis::start();
    let worker = worker(&redis, &[("SWITCHBOARD_AUTH_REQUIRE_PRINCIPAL", "true")]);
    let client = http();
    let session = init(&client, &worker).await;
    all_refused(&client, &worker, None, &session).await;
    assert_eq!(state_of(&client, &worker, "demo", &session).await, json!({}));
    let call = (Method::POST, "/call-tool", json!({"tool": "echo", "arguments": {"text": "hi"}}));
    let (status, body) = legacy(&client, &worker, Some("demo"), call, &session).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
