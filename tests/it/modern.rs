//! The modern era (MCP 2026-07-28) on the same `/mcp` (issue 14): the transport's checks,
//! `server/discover`, removed methods, `resultType`, the principal record that replaces
//! the session, and `InputRequiredResult` continued on another worker.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

const VERSION: &str = "2026-07-28";

/// The conformance fixture (a binary of the `switchboard-fixtures` package).
fn fixture_command() -> String {
    let fixture = std::env::var_os("SWITCHBOARD_FIXTURE_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(bin()).with_file_name("conformance-fixture"));
    assert!(
        fixture.is_file(),
        "no conformance fixture at {}: `cargo build --release -p switchboard-fixtures`",
        fixture.display()
    );
    fixture.display().to_string()
}

/// The `_meta` every modern request carries.
fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": VERSION,
        "io.modelcontextprotocol/clientCapabilities": {"sampling": {}, "elicitation": {}, "roots": {}},
        "io.modelcontextprotocol/clientInfo": {"name": "it", "version": "0"}
    })
}

/// A modern request with its mirrored headers (`headers` override them; an empty value removes one).
async fn modern(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    id: i64,
    method: &str,
    params: Value,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {token}"));
    let name = params.get("name").or_else(|| params.get("uri")).and_then(Value::as_str).map(String::from);
    let mut standard =
        vec![("mcp-protocol-version", VERSION.to_string()), ("mcp-method", method.to_string())];
    if let Some(name) = name {
        standard.push(("mcp-name", name));
    }
    for (key, value) in &standard {
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(key)) {
            request = request.header(*key, value.as_str());
        }
    }
    for (key, value) in headers {
        if !value.is_empty() {
            request = request.header(*key, *value);
        }
    }
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let response = request.body(body.to_string()).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// The JSON-RPC message with `id` in a JSON or SSE answer.
fn answer(body: &str, id: i64) -> Value {
    crate::mcp::answer(body, &json!(id))
}

fn with_meta(mut params: Value) -> Value {
    params["_meta"] = meta();
    params
}

#[tokio::test(flavor = "multi_thread")]
async fn modern_requests_are_checked_as_the_2026_07_28_transport_says() {
    let command = fixture_command();
    let worker = Worker::start(&[("SWITCHBOARD_MCP_COMMAND", command.as_str())], None);
    let (client, url) = (http(), worker.url("/mcp"));
    let check = |(status, body): (u16, String), id: i64, want_status: u16, want_code: i64| {
        assert_eq!(status, want_status, "{body}");
        let reply = answer(&body, id);
        assert_eq!(reply["error"]["code"], json!(want_code), "{body}");
        reply
    };
    // No _meta, or _meta without its required keys: -32602.
    check(modern(&client, &url, "demo", 1, "tools/list", json!({}), &[]).await, 1, 400, -32602);
    let partial = json!({"_meta": {"io.modelcontextprotocol/protocolVersion": VERSION}});
    check(modern(&client, &url, "demo", 2, "tools/list", partial, &[]).await, 2, 400, -32602);
    // The header must equal _meta, and name a supported version.
    let mismatch = [("mcp-protocol-version", "2025-11-25")];
    check(
        modern(&client, &url, "demo", 3, "tools/list", with_meta(json!({})), &mismatch).await,
        3,
        400,
        -32020,
    );
    let mut future = with_meta(json!({}));
    future["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    let unsupported = [("mcp-protocol-version", "2099-01-01")];
    let reply = check(
        modern(&client, &url, "demo", 4, "server/discover", future, &unsupported).await,
        4,
        400,
        -32022,
    );
    assert_eq!(reply["error"]["data"]["requested"], "2099-01-01");
    assert!(reply["error"]["data"]["supported"].as_array().unwrap().contains(&json!(VERSION)));
    // Mcp-Method and Mcp-Name mirror the body, exactly (values are case-sensitive).
    check(
        modern(&client, &url, "demo", 5, "tools/list", with_meta(json!({})), &[("mcp-method", "")]).await,
        5,
        400,
        -32020,
    );
    check(
        modern(&client, &url, "demo", 6, "tools/list", with_meta(json!({})), &[("mcp-method", "TOOLS/LIST")])
            .await,
        6,
        400,
        -32020,
    );
    let call = with_meta(json!({"name": "test_simple_text", "arguments": {}}));
    check(
        modern(&client, &url, "demo", 7, "tools/call", call.clone(), &[("mcp-name", "other")]).await,
        7,
        400,
        -32020,
    );
    check(
        modern(&client, &url, "demo", 8, "tools/call", call.clone(), &[("mcp-name", "")]).await,
        8,
        400,
        -32020,
    );
    // Surrounding whitespace is tolerated, and the base64 form is decoded.
    let (status, body) =
        modern(&client, &url, "demo", 9, "tools/call", call.clone(), &[("mcp-name", "  test_simple_text ")])
            .await;
    assert_eq!(status, 200, "{body}");
    let encoded = modern_encoded("test_simple_text");
    let (status, body) =
        modern(&client, &url, "demo", 10, "tools/call", call, &[("mcp-name", encoded.as_str())]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(answer(&body, 10)["result"]["resultType"], "complete");
    // Methods the era removed, and unknown ones: 404 with -32601 and the request id.
    for (id, method) in [
        (11, "ping"),
        (12, "initialize"),
        (13, "logging/setLevel"),
        (14, "resources/subscribe"),
        (15, "no/such"),
    ] {
        let params = with_meta(json!({"uri": "test://static-text"}));
        let (status, body) = modern(&client, &url, "demo", id, method, params, &[("mcp-name", "")]).await;
        assert_eq!(status, 404, "{method}: {body}");
        assert_eq!(answer(&body, id)["error"]["code"], -32601, "{method}: {body}");
    }
    // The legacy era still opens with initialize on the same endpoint.
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "it", "version": "0"}}});
    let response = client
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", "Bearer demo")
        .body(init.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("mcp-session-id"));
}

fn modern_encoded(text: &str) -> String {
    use base64::Engine as _;
    format!("=?base64?{}?=", base64::engine::general_purpose::STANDARD.encode(text))
}

#[tokio::test(flavor = "multi_thread")]
async fn discover_lists_both_eras_and_every_result_carries_its_result_type() {
    let command = fixture_command();
    let worker = Worker::start(&[("SWITCHBOARD_MCP_COMMAND", command.as_str())], None);
    let (client, url) = (http(), worker.url("/mcp"));
    let (status, body) = modern(&client, &url, "demo", 1, "server/discover", with_meta(json!({})), &[]).await;
    assert_eq!(status, 200, "{body}");
    let result = &answer(&body, 1)["result"];
    assert_eq!(result["resultType"], "complete");
    let versions = result["supportedVersions"].as_array().unwrap();
    assert!(versions.contains(&json!(VERSION)) && versions.contains(&json!("2025-11-25")), "{result}");
    assert!(
        result["capabilities"]["tools"].is_object() && result["capabilities"]["prompts"].is_object(),
        "{result}"
    );
    assert_eq!(result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "switchboard-conformance");
    assert!(result["ttlMs"].is_u64() && result["cacheScope"] == "private", "{result}");
    // Lists carry the cache hints; calls, prompts and reads carry resultType.
    for (id, method, params) in [
        (2, "tools/list", json!({})),
        (3, "prompts/list", json!({})),
        (4, "resources/list", json!({})),
        (5, "resources/read", json!({"uri": "test://static-text"})),
    ] {
        let (status, body) = modern(&client, &url, "demo", id, method, with_meta(params), &[]).await;
        assert_eq!(status, 200, "{method}: {body}");
        let result = &answer(&body, id)["result"];
        assert_eq!(result["resultType"], "complete", "{method}: {body}");
        assert!(result["ttlMs"].is_u64() && result["cacheScope"] == "private", "{method}: {body}");
    }
    let call = with_meta(json!({"name": "test_simple_text", "arguments": {}}));
    let (_, body) = modern(&client, &url, "demo", 6, "tools/call", call, &[]).await;
    let result = &answer(&body, 6)["result"];
    assert_eq!(result["resultType"], "complete");
    assert_eq!(result["content"][0]["text"], "This is a simple text response for testing.");
    // A resource that does not exist is -32602 in this era (-32002 from a legacy server).
    let missing = with_meta(json!({"uri": "test://nope"}));
    let (_, body) = modern(&client, &url, "demo", 7, "resources/read", missing, &[]).await;
    assert_eq!(answer(&body, 7)["error"]["code"], -32602, "{body}");
    // An undeclared capability the tool needs: -32021 with HTTP 400.
    let mut bare = with_meta(json!({"name": "test_missing_capability", "arguments": {}}));
    bare["_meta"]["io.modelcontextprotocol/clientCapabilities"] = json!({});
    let (status, body) = modern(&client, &url, "demo", 8, "tools/call", bare, &[]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(answer(&body, 8)["error"]["data"]["requiredCapabilities"], json!({"sampling": {}}));
    // Logs reach the client only when the request's _meta asks for a level.
    let logging = with_meta(json!({"name": "test_logging_tool", "arguments": {}}));
    let (_, body) = modern(&client, &url, "demo", 9, "tools/call", logging.clone(), &[]).await;
    assert!(!body.contains("notifications/message"), "{body}");
    let mut verbose = logging;
    verbose["_meta"]["io.modelcontextprotocol/logLevel"] = json!("info");
    let (_, body) = modern(&client, &url, "demo", 10, "tools/call", verbose, &[]).await;
    assert!(body.contains("notifications/message"), "{body}");
    assert_eq!(answer(&body, 10)["result"]["resultType"], "complete");
    // subscriptions/listen is acknowledged first, tagged with its id.
    let mut listen = client
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", "Bearer demo")
        .header("mcp-protocol-version", VERSION)
        .header("mcp-method", "subscriptions/listen")
        .body(json!({"jsonrpc":"2.0","id":"l1","method":"subscriptions/listen","params":with_meta(json!({"notifications":{"toolsListChanged":true}}))}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(listen.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(5), listen.chunk()).await.unwrap().unwrap().unwrap();
    let first = String::from_utf8_lossy(&first);
    assert!(
        first.contains("notifications/subscriptions/acknowledged") && first.contains("\"l1\""),
        "{first}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_principal_record_is_a_session_with_its_idle_ttl_quota_log_and_rate() {
    let redis = Redis::start();
    let command = fixture_command();
    let worker = Worker::with_redis(
        &redis,
        &[
            ("SWITCHBOARD_MCP_COMMAND", command.as_str()),
            ("SWITCHBOARD_AUTH_STATIC_TOKENS", "demo,other"),
            ("SWITCHBOARD_IDLE_TTL_SECS", "100"),
            ("SWITCHBOARD_LIMITS_REQUESTS_PER_SEC", "1"),
            ("SWITCHBOARD_LIMITS_BURST", "8"),
        ],
    );
    let (client, url) = (http(), worker.url("/mcp"));
    // Session records are `<prefix>{<id>}`; a modern request's record is one of them.
    let records = || -> Vec<String> {
        redis.keys().into_iter().filter(|k| k.starts_with("switchboard:{") && k.ends_with('}')).collect()
    };
    let call = with_meta(json!({"name": "test_simple_text", "arguments": {}}));
    let (status, body) = modern(&client, &url, "demo", 1, "tools/call", call.clone(), &[]).await;
    assert_eq!(status, 200, "{body}");
    let created = records();
    assert_eq!(created.len(), 1, "one record for the principal: {created:?}");
    let record = created[0].clone();
    let ttl: i64 = redis.cli(&["TTL", &record]).unwrap().trim().parse().unwrap();
    assert!((90..=100).contains(&ttl), "the idle TTL of a session: {ttl}");
    // The call is kept in the record's activity log, as a session's calls are.
    let log = format!("{record}:log");
    assert!(eventually(Duration::from_secs(5), || redis.keys().contains(&log)), "{:?}", redis.keys());
    // It counts against the principal's session quota, as a session does.
    let index =
        redis.keys().into_iter().find(|k| k.contains("principal:") && k.ends_with(":sessions")).unwrap();
    let id = record.trim_start_matches("switchboard:{").trim_end_matches('}');
    assert!(!redis.cli(&["ZSCORE", &index, id]).unwrap().trim().is_empty(), "counted in {index}");
    // Its TTL is reset on access, like a session's.
    redis.cli(&["EXPIRE", &record, "50"]).unwrap();
    let (status, _) = modern(&client, &url, "demo", 2, "tools/call", call.clone(), &[]).await;
    assert_eq!(status, 200);
    let ttl: i64 = redis.cli(&["TTL", &record]).unwrap().trim().parse().unwrap();
    assert!(ttl > 50, "reset on access: {ttl}");
    // The same token keeps its record; another token gets its own.
    let (status, _) = modern(&client, &url, "other", 3, "tools/list", with_meta(json!({})), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(records().len(), 2, "{:?}", redis.keys());
    // The same rate as sessions: past the burst, 429.
    let mut limited = false;
    for id in 10..24 {
        let (status, _) = modern(&client, &url, "demo", id, "tools/list", with_meta(json!({})), &[]).await;
        limited |= status == 429;
    }
    assert!(limited, "the principal's rate applies to modern requests");
    // A refused token is refused, and gets no record.
    let (status, body) = modern(&client, &url, "wrong", 20, "tools/list", with_meta(json!({})), &[]).await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_principal_s_first_requests_at_once_on_two_workers_all_succeed_on_one_record() {
    // A client that opens with several requests in parallel: whichever creates the principal
    // record first, the others find it and are served; none gets an error for the race.
    let redis = Redis::start();
    let command = fixture_command();
    let env = [("SWITCHBOARD_MCP_COMMAND", command.as_str()), ("SWITCHBOARD_AUTH_STATIC_TOKENS", "demo")];
    let workers = [Worker::with_redis(&redis, &env), Worker::with_redis(&redis, &env)];
    let client = http();
    let answers: Vec<(u16, String)> =
        futures_util::future::join_all((0..16).map(|n| {
            let (client, url) = (&client, workers[n % 2].url("/mcp"));
            async move {
                modern(client, &url, "demo", n as i64 + 1, "tools/list", with_meta(json!({})), &[]).await
            }
        }))
        .await;
    for (n, (status, body)) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "request {n}: {body}");
        assert!(answer(body, n as i64 + 1)["result"]["tools"].is_array(), "request {n}: {body}");
    }
    let records: Vec<String> =
        redis.keys().into_iter().filter(|k| k.starts_with("switchboard:{") && k.ends_with('}')).collect();
    assert_eq!(records.len(), 1, "one record for the principal: {records:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn input_required_is_continued_on_another_worker_and_foreign_or_forged_state_is_refused() {
    let redis = Redis::start();
    let command = fixture_command();
    let env =
        [("SWITCHBOARD_MCP_COMMAND", command.as_str()), ("SWITCHBOARD_AUTH_STATIC_TOKENS", "demo,other")];
    let a = Worker::with_redis(&redis, &env);
    let b = Worker::with_redis(&redis, &env);
    let client = http();
    let call = with_meta(json!({"name": "test_input_required_result_elicitation", "arguments": {}}));
    let (status, body) = modern(&client, &a.url("/mcp"), "demo", 1, "tools/call", call.clone(), &[]).await;
    assert_eq!(status, 200, "{body}");
    let result = answer(&body, 1)["result"].clone();
    assert_eq!(result["resultType"], "input_required", "{body}");
    assert_eq!(result["inputRequests"]["user_name"]["method"], "elicitation/create", "{body}");
    let state = result["requestState"].as_str().unwrap().to_string();
    let retry = |state: &str| {
        let mut params = call.clone();
        params["inputResponses"] = json!({"user_name": {"action": "accept", "content": {"name": "Ada"}}});
        params["requestState"] = json!(state);
        params
    };
    // Forged: refused with a clear error.
    let (status, body) =
        modern(&client, &b.url("/mcp"), "demo", 2, "tools/call", retry(&format!("{state}x")), &[]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(answer(&body, 2)["error"]["code"], -32602);
    // Another principal's retry: refused.
    let (status, body) = modern(&client, &b.url("/mcp"), "other", 3, "tools/call", retry(&state), &[]).await;
    assert_eq!(status, 400, "{body}");
    assert!(answer(&body, 3)["error"]["message"].as_str().unwrap().contains("other credentials"), "{body}");
    // The real retry on the other worker reaches the waiting child on the first one.
    let (status, body) = modern(&client, &b.url("/mcp"), "demo", 4, "tools/call", retry(&state), &[]).await;
    assert_eq!(status, 200, "{body}");
    let done = &answer(&body, 4)["result"];
    assert_eq!(done["resultType"], "complete", "{body}");
    assert_eq!(done["content"][0]["text"], "Hello, Ada!", "{body}");
    // A spent state does not run twice.
    let (_, body) = modern(&client, &b.url("/mcp"), "demo", 5, "tools/call", retry(&state), &[]).await;
    assert!(answer(&body, 5)["error"]["message"].as_str().unwrap().contains("ended"), "{body}");
    // Several rounds, across workers each time.
    let rounds = with_meta(json!({"name": "test_input_required_result_multi_round", "arguments": {}}));
    let (_, body) = modern(&client, &b.url("/mcp"), "demo", 6, "tools/call", rounds.clone(), &[]).await;
    let first = answer(&body, 6)["result"].clone();
    assert!(first["inputRequests"]["step1"].is_object(), "{body}");
    let mut params = rounds.clone();
    params["inputResponses"] = json!({"step1": {"action": "accept", "content": {"name": "Ada"}}});
    params["requestState"] = first["requestState"].clone();
    let (_, body) = modern(&client, &a.url("/mcp"), "demo", 7, "tools/call", params, &[]).await;
    let second = answer(&body, 7)["result"].clone();
    assert!(second["inputRequests"]["step2"].is_object(), "{body}");
    assert_ne!(second["requestState"], first["requestState"]);
    let mut params = rounds;
    params["inputResponses"] = json!({"step2": {"action": "accept", "content": {"color": "green"}}});
    params["requestState"] = second["requestState"].clone();
    let (_, body) = modern(&client, &a.url("/mcp"), "demo", 8, "tools/call", params, &[]).await;
    assert_eq!(answer(&body, 8)["result"]["content"][0]["text"], "Ada likes green", "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_waiting_too_long_for_input_is_ended_and_its_retry_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "input_wait_secs = 1\n");
    let command = fixture_command();
    let worker = Worker::start(&[("SWITCHBOARD_MCP_COMMAND", command.as_str())], Some(&config));
    let client = http();
    let call = with_meta(json!({"name": "test_input_required_result_elicitation", "arguments": {}}));
    let (_, body) = modern(&client, &worker.url("/mcp"), "demo", 1, "tools/call", call.clone(), &[]).await;
    let result = answer(&body, 1)["result"].clone();
    assert_eq!(result["resultType"], "input_required", "{body}");
    assert!(!children_of(worker.pid()).is_empty(), "the child waits for the answer");
    assert!(
        eventually(Duration::from_secs(10), || children_of(worker.pid()).is_empty()),
        "the child is ended"
    );
    let mut retry = call;
    retry["inputResponses"] = json!({"user_name": {"action": "accept", "content": {"name": "Ada"}}});
    retry["requestState"] = result["requestState"].clone();
    let (status, body) = modern(&client, &worker.url("/mcp"), "demo", 2, "tools/call", retry, &[]).await;
    assert_eq!(status, 400, "{body}");
    let message = answer(&body, 2)["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("expired") || message.contains("waited too long"), "{message}");
}
