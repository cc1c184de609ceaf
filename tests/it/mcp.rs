//! MCP Streamable HTTP at `/mcp` (issue: any MCP client, any worker).

use serde_json::{Value, json};

use crate::support::*;

const ACCEPT: &str = "application/json, text/event-stream";

/// POSTs one message to `/mcp`; returns (status, headers, body text).
async fn post(
    client: &reqwest::Client,
    worker: &Worker,
    session: Option<&str>,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> (u16, reqwest::header::HeaderMap, String) {
    use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
    let mut map = HeaderMap::new();
    let mut set = |k: &str, v: &str| {
        map.insert(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    };
    set("content-type", "application/json");
    set("accept", ACCEPT);
    set("authorization", "Bearer demo");
    if let Some(s) = session {
        set("mcp-session-id", s);
        set("mcp-protocol-version", "2025-11-25");
    }
    for (k, v) in headers {
        set(&k.to_ascii_lowercase(), v);
    }
    let request = client.post(worker.url("/mcp")).headers(map);
    let response = request.body(body).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

/// The JSON-RPC message of a JSON or SSE answer with the given id.
pub(crate) fn answer(body: &str, id: &Value) -> Value {
    let candidates: Vec<Value> = if body.trim_start().starts_with('{') {
        vec![serde_json::from_str(body).unwrap()]
    } else {
        body.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    };
    candidates
        .into_iter()
        .find(|m| &m["id"] == id)
        .unwrap_or_else(|| panic!("no answer with id {id} in {body}"))
}

async fn initialize(client: &reqwest::Client, worker: &Worker, version: &str) -> String {
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "it", "version": "0"}}});
    let (status, headers, body) = post(client, worker, None, &[], init.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let reply = answer(&body, &json!(1));
    assert_eq!(reply["result"]["protocolVersion"], version);
    let session = headers["mcp-session-id"].to_str().unwrap().to_string();
    assert!(session.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    let (status, _, _) = post(
        client,
        worker,
        Some(&session),
        &[],
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!(status, 202);
    session
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_opened_on_one_worker_is_served_by_another_and_ends_with_delete() {
    let redis = Redis::start();
    let a = Worker::with_redis(&redis, &[]);
    let b = Worker::with_redis(&redis, &[]);
    let client = http();
    let session = initialize(&client, &a, "2025-11-25").await;
    let call = json!({"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"echo","arguments":{"text":"via b"}}});
    let (status, _, body) = post(&client, &b, Some(&session), &[], call.to_string()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(answer(&body, &json!("c1"))["result"]["content"][0]["text"], "via b");
    let list = json!({"jsonrpc":"2.0","id":2,"method":"tools/list"});
    let (_, _, body) = post(&client, &a, Some(&session), &[], list.to_string()).await;
    assert_eq!(answer(&body, &json!(2))["result"]["tools"].as_array().map(Vec::len), Some(5));
    // Someone else's credentials do not open this session.
    let (status, _, _) =
        post(&client, &b, Some(&session), &[("Authorization", "Bearer intruder")], list.to_string()).await;
    assert_eq!(status, 404);
    let response = client
        .delete(b.url("/mcp"))
        .header("Mcp-Session-Id", &session)
        .header("Authorization", "Bearer demo")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, _, _) = post(&client, &a, Some(&session), &[], list.to_string()).await;
    assert_eq!(status, 404, "a deleted session is gone on every worker");
}

/// Extra headers, body, whether the session id is sent, expected status.
type Case = (Vec<(&'static str, &'static str)>, String, bool, u16);

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_the_statuses_of_the_spec_and_the_worker_keeps_serving() {
    let worker = Worker::start(&[], None);
    let client = http();
    let session = initialize(&client, &worker, "2025-11-25").await;
    let ping = r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#;
    let big =
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"x":"{}"}}}}"#, "x".repeat(10 << 20));
    let cases: Vec<Case> = vec![
        (vec![], big, true, 413),
        (vec![], "{garbage".into(), true, 400),
        (vec![], format!("[{ping},{ping}]"), true, 400),
        (vec![("MCP-Protocol-Version", "1999-01-01")], ping.into(), true, 400),
        (vec![("Accept", "application/json")], ping.into(), true, 406),
        (vec![("Origin", "http://evil.example")], ping.into(), true, 403),
        (vec![("Host", "evil.example")], ping.into(), true, 421),
        (vec![("Content-Type", "text/plain")], ping.into(), true, 415),
        (vec![], ping.into(), false, 400),
        (vec![], r#"{"jsonrpc":"2.0","id":3,"method":"server/discover"}"#.into(), false, 400),
    ];
    for (headers, body, with_session, expected) in cases {
        let label = format!("{headers:?} {}", &body[..body.len().min(40)]);
        let (status, _, text) =
            post(&client, &worker, with_session.then_some(session.as_str()), &headers, body).await;
        assert_eq!(status, expected, "{label}: {text}");
        if status == 400 {
            let code = serde_json::from_str::<Value>(&text).unwrap()["error"]["code"].as_i64().unwrap();
            assert!(!(-32022..=-32020).contains(&code), "a dual-era client must fall back to initialize");
        }
    }
    let (status, _, _) = post(&client, &worker, Some("x".repeat(43).as_str()), &[], ping.to_string()).await;
    assert_eq!(status, 404);
    let (status, _, body) = post(&client, &worker, Some(&session), &[], ping.to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(answer(&body, &json!(9))["result"], json!({}));
    let response = client.get(worker.url("/mcp")).header("Accept", "text/event-stream").send().await.unwrap();
    assert_eq!(response.status(), 405);
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_are_served_only_for_2025_03_26_sessions() {
    let worker = Worker::start(&[], None);
    let client = http();
    let session = initialize(&client, &worker, "2025-03-26").await;
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"b"}}}]"#;
    let (status, _, body) =
        post(&client, &worker, Some(&session), &[("MCP-Protocol-Version", "2025-03-26")], batch).await;
    assert_eq!(status, 200, "{body}");
    let answers: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[1]["result"]["content"][0]["text"], "b");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_level_set_on_the_session_holds_for_every_spawned_server() {
    // The conformance fixture is a binary of the `switchboard-fixtures` package, which
    // `cargo test` here does not build: scripts/test.sh builds it and names it in
    // SWITCHBOARD_FIXTURE_BIN; otherwise it is looked for next to the switchboard binary.
    let fixture = std::env::var_os("SWITCHBOARD_FIXTURE_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(bin()).with_file_name("conformance-fixture"));
    assert!(
        fixture.is_file(),
        "no conformance fixture at {}: build it with `cargo build --release -p switchboard-fixtures` \
         (scripts/test.sh does) or name it in SWITCHBOARD_FIXTURE_BIN",
        fixture.display()
    );
    let command = fixture.display().to_string();
    let worker = Worker::start(&[("SWITCHBOARD_MCP_COMMAND", command.as_str())], None);
    let client = http();
    let session = initialize(&client, &worker, "2025-11-25").await;
    let call = json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"test_tool_with_logging","arguments":{}}});
    let logs = |body: &str| body.matches("notifications/message").count();
    let (status, _, body) = post(&client, &worker, Some(&session), &[], call.to_string()).await;
    assert_eq!(status, 200);
    assert!(logs(&body) >= 3, "info messages stream before the result: {body}");
    assert!(answer(&body, &json!(7))["result"].is_object());
    let set = json!({"jsonrpc":"2.0","id":8,"method":"logging/setLevel","params":{"level":"error"}});
    let (status, _, body) = post(&client, &worker, Some(&session), &[], set.to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(answer(&body, &json!(8))["result"], json!({}));
    let (status, _, body) = post(&client, &worker, Some(&session), &[], call.to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(logs(&body), 0, "a fresh server must get the session's level: {body}");
    assert!(answer(&body, &json!(7))["result"].is_object());
    let bad = json!({"jsonrpc":"2.0","id":9,"method":"logging/setLevel","params":{"level":"loud"}});
    let (_, _, body) = post(&client, &worker, Some(&session), &[], bad.to_string()).await;
    assert_eq!(answer(&body, &json!(9))["error"]["code"], json!(-32602));
}
