//! Abuse findings: buffers. A child's stderr without newlines, a batch whose answers are
//! huge, a child that refuses `initialize` with an error of id null, capabilities too deep,
//! and one principal holding its share of the children cap with calls that hang. Each on a
//! real redis-server and a real worker, with the small sh server `flood_server.sh`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

const ACCEPT: &str = "application/json, text/event-stream";

/// Bytes of stderr the flooding child writes without a newline.
const FLOOD_BYTES: u64 = 200_000_000;

/// Bytes of text in each `big` answer.
const BIG_BYTES: u64 = 8_000_000;

/// How much the worker's resident memory may grow while a flood is served: loose (a child's
/// answer passes through several buffers), and far below what keeping the flood would take.
const RSS_GROWTH_BOUND_KB: u64 = 120 * 1024;

/// A worker on its own Redis whose one server is `flood_server.sh` (with `env` added to its
/// environment), tokens `demo`, `alice` and `mallory`, and `top` added to the config.
fn flood_worker(redis: &Redis, dir: &std::path::Path, top: &str, env: &str) -> Worker {
    let config = write_config(
        dir,
        &format!(
            r#"{top}
drain_timeout_secs = 1
[servers.flood]
command = ["/bin/sh", "{script}"]
env = {{ FLOOD_BYTES = "{FLOOD_BYTES}", BIG_BYTES = "{BIG_BYTES}"{env} }}
init_timeout_secs = 30
shutdown_grace_secs = 0.5
warm_idle_secs = 0
"#,
            script = fixture("flood_server.sh"),
        ),
    );
    let url = redis.url();
    Worker::start(
        &[
            ("SWITCHBOARD_REDIS_URL", url.as_str()),
            ("SWITCHBOARD_SECRET_KEY", SECRET_KEY),
            ("SWITCHBOARD_AUTH_STATIC_TOKENS", "demo,alice,mallory"),
        ],
        Some(&config),
    )
}

/// The resident memory of a process (KiB), from /proc.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Samples a process's resident memory every few milliseconds until stopped; the peak.
struct RssPeak {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl RssPeak {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = rss_kb(pid);
            // Bounded: two minutes of samples at most.
            for _ in 0..24_000 {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                peak = peak.max(rss_kb(pid));
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        });
        Self { stop, thread }
    }

    fn peak(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap_or(u64::MAX)
    }
}

/// POSTs to `/mcp` with the token `demo`; (status, body).
async fn mcp(
    client: &reqwest::Client,
    worker: &Worker,
    session: Option<&str>,
    version: &str,
    body: String,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut request = client
        .post(worker.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", ACCEPT)
        .header("authorization", "Bearer demo");
    if let Some(session) = session {
        request = request.header("mcp-session-id", session).header("mcp-protocol-version", version);
    }
    let response = request.body(body).send().await.expect("POST /mcp");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap_or_default())
}

fn initialize_body(version: &str, capabilities: Value) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": capabilities, "clientInfo": {"name": "it", "version": "0"}}})
    .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_child_flooding_stderr_without_newlines_leaves_the_worker_memory_flat() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let worker = flood_worker(&redis, dir.path(), "", "");
    let client = http();
    let session = init(&client, &worker).await;
    let (status, body) = call_tool(&client, &worker, &session, "ok", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let before = rss_kb(worker.pid());
    let sampler = RssPeak::start(worker.pid());
    let (status, body) = call_tool(&client, &worker, &session, "stderr", json!({})).await;
    let peak = sampler.peak();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["content"][0]["text"], "flooded");
    eprintln!("stderr flood of {FLOOD_BYTES} bytes: worker VmRSS {before} kB before, peak {peak} kB");
    assert!(
        peak < before + RSS_GROWTH_BOUND_KB,
        "the worker grew from {before} kB to {peak} kB while draining {FLOOD_BYTES} bytes of stderr"
    );
    // And it keeps serving.
    let (status, _) = call_tool(&client, &worker, &session, "ok", json!({})).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_whose_answers_pass_the_cap_answers_errors_for_the_rest_in_bounded_memory() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let worker = flood_worker(&redis, dir.path(), "", "");
    let client = http();
    let (status, headers, body) =
        mcp(&client, &worker, None, "", initialize_body("2025-03-26", json!({}))).await;
    assert_eq!(status, 200, "{body}");
    let session = headers["mcp-session-id"].to_str().expect("session id").to_string();
    let items: Vec<Value> = (1..=20)
        .map(|id| json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "big", "arguments": {}}}))
        .collect();
    let before = rss_kb(worker.pid());
    let sampler = RssPeak::start(worker.pid());
    let (status, _, body) =
        mcp(&client, &worker, Some(&session), "2025-03-26", Value::Array(items).to_string()).await;
    let peak = sampler.peak();
    assert_eq!(status, 200, "{}", &body[..body.len().min(300)]);
    let answers: Vec<Value> = serde_json::from_str(&body).expect("a JSON array");
    assert_eq!(answers.len(), 20, "one answer per request");
    // The default cap (16 MiB) holds two answers of 8 MB: the rest are errors naming it.
    let results = answers.iter().filter(|a| a.get("result").is_some()).count();
    assert_eq!(results, 2);
    for answer in &answers[2..] {
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("max_batch_answer_bytes"), "{answer}");
        assert_eq!(answer["error"]["code"], -32000);
    }
    assert_eq!(answers[19]["id"], 20);
    eprintln!("batch of 20 × {BIG_BYTES} bytes: worker VmRSS {before} kB before, peak {peak} kB");
    assert!(peak < before + RSS_GROWTH_BOUND_KB, "the worker grew from {before} kB to {peak} kB");

    // Too many items: refused whole, naming the limit.
    let pings: Vec<Value> =
        (1..=65).map(|id| json!({"jsonrpc": "2.0", "id": id, "method": "ping"})).collect();
    let (status, _, body) =
        mcp(&client, &worker, Some(&session), "2025-03-26", Value::Array(pings).to_string()).await;
    assert_eq!(status, 400, "{body}");
    let refusal: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(refusal["error"]["code"], -32600);
    assert!(refusal["error"]["message"].as_str().unwrap_or_default().contains("at most 64"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn capabilities_too_deep_or_too_large_are_refused_at_initialize() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let worker = flood_worker(&redis, dir.path(), "", "");
    let client = http();
    let mut deep = json!({});
    for _ in 0..12 {
        deep = json!({ "x": deep });
    }
    let large = json!({"experimental": {"pad": "p".repeat(20_000)}});
    for capabilities in [deep, large] {
        let (status, headers, body) =
            mcp(&client, &worker, None, "", initialize_body("2025-06-18", capabilities)).await;
        assert_eq!(status, 400, "{body}");
        assert!(!headers.contains_key("mcp-session-id"), "no session made");
        let refusal: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(refusal["error"]["code"], -32602, "{body}");
        assert!(refusal["error"]["message"].as_str().unwrap_or_default().contains("at most"), "{body}");
    }
    let (status, _, body) =
        mcp(&client, &worker, None, "", initialize_body("2025-06-18", json!({"sampling": {}}))).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_child_refusing_initialize_with_an_error_of_id_null_is_a_502_at_once() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let worker = flood_worker(&redis, dir.path(), "", r#", MODE = "initerr""#);
    let client = http();
    let session = init(&client, &worker).await;
    let started = Instant::now();
    let (status, body) = call_tool(&client, &worker, &session, "ok", json!({})).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "upstream_init_refused", "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("initialize refused"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(10), "well under the 30 s init timeout");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_principal_holding_its_share_with_hanging_calls_does_not_keep_others_out() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().expect("tempdir");
    // Two slots: each principal's share is one.
    let worker = Arc::new(flood_worker(&redis, dir.path(), "max_children = 2\nqueue_wait_secs = 2", ""));
    let client = http();
    let mallory = init_with(&client, &worker, json!({"token": "mallory"})).await;
    let alice = init_with(&client, &worker, json!({"token": "alice"})).await;
    let hanging = {
        let (client, worker, mallory) = (client.clone(), worker.clone(), mallory.clone());
        tokio::spawn(async move { call_tool(&client, &worker, &mallory, "hang", json!({})).await })
    };
    let spawned =
        eventually_async(Duration::from_secs(10), || async { spawns(&client, &worker).await >= 1.0 }).await;
    assert!(spawned, "the hanging call holds its child");
    // Past its share: mallory's next call waits for mallory's own, then 503.
    let response = client
        .post(worker.url("/call-tool"))
        .header("Mcp-Session-Id", &mallory)
        .json(&json!({"tool": "hang", "arguments": {}}))
        .send()
        .await
        .expect("POST /call-tool");
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    // Someone else still gets the other slot.
    let (status, body) = call_tool(&client, &worker, &alice, "ok", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["content"][0]["text"], "ok");
    let metrics =
        client.get(worker.url("/metrics")).send().await.expect("metrics").text().await.unwrap_or_default();
    assert!(metrics.contains(r#"switchboard_limits_total{limit="principal_share"} 1"#), "{metrics}");
    hanging.abort();
}
