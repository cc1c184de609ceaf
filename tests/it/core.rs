//! The core worker (issue: stateless worker, Redis-only sessions, a fresh MCP server per request).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// Calls the demo server directly over stdio, the way the gateway does.
fn direct_demo_call(tool: &str, arguments: Value) -> Value {
    let mut child = Command::new(bin())
        .arg("demo-server")
        .env("DEMO_TOKEN", "demo")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo server");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    writeln!(stdin, r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{}},"clientInfo":{{"name":"t","version":"0"}}}}}}"#).unwrap();
    stdout.read_line(&mut line).unwrap();
    writeln!(stdin, r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#).unwrap();
    let call =
        json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":tool,"arguments":arguments}});
    writeln!(stdin, "{call}").unwrap();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    drop(stdin);
    let _ = child.wait();
    let response: Value = serde_json::from_str(&line).unwrap();
    response["result"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn init_on_one_worker_and_call_on_another_matches_a_direct_call() {
    let redis = Redis::start();
    let a = Worker::with_redis(&redis, &[]);
    let b = Worker::with_redis(&redis, &[]);
    let client = http();
    let session = init(&client, &a).await;
    let arguments = json!({"survey": "product-nps-2025"});
    let (status, body) = call_tool(&client, &b, &session, "survey_summary", arguments.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cached"], json!(false));
    assert_eq!(body["result"], direct_demo_call("survey_summary", arguments));
    assert_eq!(body["result"]["structuredContent"]["nps"], json!(25.7));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_access_resets_the_idle_ttl_and_an_idle_session_expires_with_404() {
    let redis = Redis::start();
    let worker = Worker::with_redis(&redis, &[("SWITCHBOARD_IDLE_TTL_SECS", "2")]);
    let client = http();
    let session = init(&client, &worker).await;
    let key = format!("switchboard:{{{session}}}");
    // Most of the idle TTL passes (the key's life is shortened as 1.2 s would), then a call.
    redis.cli(&["PEXPIRE", &key, "800"]).unwrap();
    let (status, _) = call_tool(&client, &worker, &session, "echo", json!({"text": "x"})).await;
    assert_eq!(status, 200);
    let pttl: i64 = redis.cli(&["PTTL", &key]).unwrap().trim().parse().unwrap();
    assert!((1000..=2000).contains(&pttl), "TTL after a call is {pttl} ms, expected the full 2 s (±1 s)");
    let keys = redis.keys();
    assert!(keys.iter().all(|k| k.starts_with("switchboard:")), "{keys:?}");
    // Idle from here on: Redis itself expires the session after its TTL.
    let expired =
        eventually(Duration::from_secs(5), || redis.cli(&["EXISTS", &key]).is_ok_and(|n| n.trim() == "0"));
    assert!(expired, "the idle session did not expire");
    let (status, body) = call_tool(&client, &worker, &session, "echo", json!({"text": "x"})).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "session_not_found");
    let response =
        client.get(worker.url("/session")).header("Mcp-Session-Id", &session).send().await.unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_restarted_between_init_and_call_still_serves_the_session() {
    let redis = Redis::start();
    let mut worker = Worker::with_redis(&redis, &[]);
    let client = http();
    let session = init(&client, &worker).await;
    worker.restart();
    let (status, body) = call_tool(&client, &worker, &session, "echo", json!({"text": "still here"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["structuredContent"]["text"], "still here");
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_patches_over_two_workers_lose_nothing() {
    let redis = Redis::start();
    let a = Worker::with_redis(&redis, &[]);
    let b = Worker::with_redis(&redis, &[]);
    let client = http();
    let session = init(&client, &a).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let url = if i % 2 == 0 { a.url("/session") } else { b.url("/session") };
        let client = client.clone();
        let session = session.clone();
        tasks.push(tokio::spawn(async move {
            let patch = json!({ format!("k{i}"): i, "nested": { format!("n{i}"): true } });
            client.patch(url).header("Mcp-Session-Id", session).json(&patch).send().await.unwrap().status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    let view = get_json(&client, &a, "/session", &session).await;
    let state = view["state"].as_object().unwrap();
    for i in 0..50 {
        assert_eq!(state[&format!("k{i}")], json!(i), "k{i} lost: {state:?}");
        assert_eq!(view["state"]["nested"][format!("n{i}")], json!(true));
    }
    // A null removes a key (RFC 7396).
    let response = client
        .patch(b.url("/session"))
        .header("Mcp-Session-Id", &session)
        .json(&json!({"k0": null}))
        .send()
        .await
        .unwrap();
    let view: Value = response.json().await.unwrap();
    assert!(view["state"].get("k0").is_none());
    assert!(view.get("credentials").is_none() && !view.to_string().contains("demo\""));
}

pub(crate) fn misbehaving_worker(
    dir: &std::path::Path,
    mode: &str,
    call_timeout_secs: f64,
) -> (Worker, String) {
    let pidfile = dir.join(format!("{mode}.pid")).to_string_lossy().into_owned();
    let config = write_config(
        dir,
        &format!(
            r#"
[servers.default]
command = ["/usr/bin/python3", "{}", "{mode}", "{pidfile}"]
call_timeout_secs = {call_timeout_secs:?}
init_timeout_secs = 10.0
shutdown_grace_secs = 0.3
"#,
            fixture("misbehaving_server.py")
        ),
    );
    (Worker::start(&[], Some(&config)), pidfile)
}

pub(crate) fn read_pids(pidfile: &str) -> (u32, u32, u32) {
    let text = std::fs::read_to_string(pidfile).expect("fixture wrote its pid file");
    let v: Vec<u32> = text.split_whitespace().map(|s| s.parse().unwrap()).collect();
    (v[0], v[1], v[2])
}

pub(crate) fn assert_nothing_left(worker: &Worker, pids: (u32, u32, u32)) {
    let (pid, pgid, grandchild) = pids;
    assert_ne!(pgid, worker.pid(), "the server must run in its own process group");
    let gone = eventually(Duration::from_secs(5), || {
        group_members(pgid).is_empty() && children_of(worker.pid()).is_empty()
    });
    assert!(
        gone,
        "left behind: group {pgid} = {:?}, worker children = {:?} (server {pid}, grandchild {grandchild})",
        group_members(pgid),
        children_of(worker.pid())
    );
    if grandchild != 0 {
        assert!(!std::path::Path::new(&format!("/proc/{grandchild}")).exists(), "grandchild survived");
    }
}

/// A call to a misbehaving server of `mode` answers `status` with `code`; returns the worker
/// and the server's pids for the leftover checks.
async fn misbehaving_call(
    dir: &std::path::Path,
    mode: &str,
    status: u16,
    code: &str,
) -> (Worker, (u32, u32, u32)) {
    let (worker, pidfile) = misbehaving_worker(dir, mode, 1.0);
    let client = http();
    let session = init(&client, &worker).await;
    let (got, body) = call_tool(&client, &worker, &session, "anything", json!({})).await;
    assert_eq!(got, status, "{body}");
    assert_eq!(body["error"]["code"], code);
    let pids = read_pids(&pidfile);
    (worker, pids)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashing_server_is_a_clear_502_and_leaves_no_process() {
    let dir = tempfile::tempdir().unwrap();
    let (worker, pids) = misbehaving_call(dir.path(), "crash", 502, "upstream_exited").await;
    assert_nothing_left(&worker, pids);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_server_is_a_504_and_leaves_no_process() {
    let dir = tempfile::tempdir().unwrap();
    let (worker, pids) = misbehaving_call(dir.path(), "hang", 504, "upstream_timeout").await;
    assert_nothing_left(&worker, pids);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_ignores_sigterm_is_killed_with_its_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let (worker, pids) = misbehaving_call(dir.path(), "stubborn", 504, "upstream_timeout").await;
    assert_ne!(pids.2, 0, "the stubborn fixture starts a grandchild");
    assert_nothing_left(&worker, pids);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_goes_away_mid_call_leaves_no_process() {
    let dir = tempfile::tempdir().unwrap();
    let (worker, pidfile) = misbehaving_worker(dir.path(), "stubborn", 1.0);
    let client = http();
    let session = init(&client, &worker).await;
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let result = impatient
        .post(worker.url("/call-tool"))
        .header("Mcp-Session-Id", &session)
        .json(&json!({"tool": "x", "arguments": {}}))
        .send()
        .await;
    assert!(result.is_err(), "the client gave up before the server answered");
    assert!(eventually(Duration::from_secs(5), || std::path::Path::new(&pidfile).exists()));
    assert_nothing_left(&worker, read_pids(&pidfile));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_of_a_worker_takes_its_children_along() {
    let dir = tempfile::tempdir().unwrap();
    let (mut worker, pidfile) = misbehaving_worker(dir.path(), "hang", 60.0);
    let client = http();
    let session = init(&client, &worker).await;
    let url = worker.url("/call-tool");
    let call = tokio::spawn(async move {
        let _ = client.post(url).header("Mcp-Session-Id", session).json(&json!({"tool":"x"})).send().await;
    });
    assert!(eventually(Duration::from_secs(10), || std::path::Path::new(&pidfile).exists()));
    let (pid, pgid, _) = read_pids(&pidfile);
    worker.kill9();
    let gone = eventually(Duration::from_secs(5), || group_members(pgid).is_empty());
    assert!(gone, "server {pid} outlived its SIGKILLed worker: {:?}", group_members(pgid));
    call.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_json_errors_and_the_worker_keeps_serving() {
    let worker = Worker::start(&[], None);
    let client = http();
    let session = init(&client, &worker).await;
    let post = |path: &str, body: Vec<u8>| {
        let request = client.post(worker.url(path)).header("Content-Type", "application/json");
        request.header("Mcp-Session-Id", &session).body(body).send()
    };
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("/call-tool", b"{not json".to_vec(), 400, "bad_request"),
        ("/call-tool", b"".to_vec(), 400, "bad_request"),
        ("/call-tool", br#"{"arguments":{}}"#.to_vec(), 400, "bad_request"),
        ("/call-tool", br#"{"tool":42}"#.to_vec(), 400, "bad_request"),
        ("/call-tool", br#"{"tool":"echo","arguments":[1]}"#.to_vec(), 400, "bad_request"),
        ("/call-tool", br#"[]"#.to_vec(), 400, "bad_request"),
        ("/init", br#"{"credentials":"demo"}"#.to_vec(), 400, "bad_credentials"),
        ("/init", br#"{"credentials":{"token":"wrong"}}"#.to_vec(), 401, "invalid_credentials"),
        ("/init", vec![b' '; 10 * 1024 * 1024], 413, "body_too_large"),
        (
            "/call-tool",
            format!(r#"{{"tool":"echo","arguments":{{"text":"{}"}}}}"#, "x".repeat(10 << 20)).into_bytes(),
            413,
            "body_too_large",
        ),
    ];
    for (path, body, status, code) in cases {
        let response = post(path, body).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let response = client
        .post(worker.url("/call-tool"))
        .header("Mcp-Session-Id", "not-a-session")
        .json(&json!({"tool": "echo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = client.post(worker.url("/call-tool")).json(&json!({"tool": "echo"})).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let (status, body) = call_tool(&client, &worker, &session, "echo", json!({"text": "alive"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["content"][0]["text"], "alive");
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_reach_the_server_and_are_never_stored_in_clear() {
    let redis = Redis::start();
    let secret = "s3cret-token-that-must-not-leak";
    let worker = Worker::with_redis(&redis, &[("SWITCHBOARD_AUTH_STATIC_TOKENS", secret)]);
    let client = http();
    let session = init_with(&client, &worker, json!({"token": secret})).await;
    let (status, body) = call_tool(&client, &worker, &session, "echo", json!({"text": "hi"})).await;
    assert_eq!(status, 200);
    assert_ne!(body["result"]["isError"], json!(true), "DEMO_TOKEN did not reach the server: {body}");
    let keys = redis.keys();
    assert!(!keys.is_empty());
    for key in keys {
        let kind = redis.cli(&["TYPE", &key]).unwrap();
        let dump =
            if kind.trim() == "hash" { redis.cli(&["HGETALL", &key]) } else { redis.cli(&["GET", &key]) };
        assert!(!dump.unwrap().contains(secret), "{key} holds the plaintext credential");
    }
    let view = client.get(worker.url("/session")).header("Mcp-Session-Id", &session).send().await.unwrap();
    assert!(!view.text().await.unwrap().contains(secret));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tool_list_is_cached_and_a_deleted_session_is_gone() {
    let redis = Redis::start();
    let worker = Worker::with_redis(&redis, &[]);
    let client = http();
    let session = init(&client, &worker).await;
    for _ in 0..2 {
        let tools = get_json(&client, &worker, "/tools", &session).await;
        let names: Vec<&str> =
            tools["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
        assert_eq!(names, ["echo", "list_surveys", "survey_summary", "segment_breakdown", "search_feedback"]);
    }
    assert_eq!(spawns(&client, &worker).await, 1.0, "the second /tools must come from the cache");
    let response =
        client.delete(worker.url("/session")).header("Mcp-Session-Id", &session).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let (status, _) = call_tool(&client, &worker, &session, "echo", json!({"text": "x"})).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn server_everything_from_npm_answers_echo_through_call_tool() {
    let Some(dir) = std::env::var_os("SWITCHBOARD_TEST_NPM_DIR") else {
        assert!(
            std::env::var_os("SWITCHBOARD_TEST_REQUIRE_INTEROP").is_none(),
            "SWITCHBOARD_TEST_NPM_DIR is not set"
        );
        eprintln!("skipped: SWITCHBOARD_TEST_NPM_DIR not set (scripts/test.sh sets it)");
        return;
    };
    let entry =
        std::path::Path::new(&dir).join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(entry.exists(), "{} missing", entry.display());
    let command = format!("node {} stdio", entry.display());
    let worker = Worker::start(&[("SWITCHBOARD_MCP_COMMAND", &command)], None);
    let client = http();
    let session = init(&client, &worker).await;
    let (status, body) =
        call_tool(&client, &worker, &session, "echo", json!({"message": "hello everything"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["content"][0]["text"], "Echo: hello everything");
    assert!(eventually(Duration::from_secs(5), || children_of(worker.pid()).is_empty()));
}
