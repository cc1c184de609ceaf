//! Results (issue: a shared result cache, jq filters, size caps, several MCP servers).

use serde_json::{Value, json};

use crate::support::*;

async fn list_tools(client: &reqwest::Client, worker: &Worker, session: &str) -> Vec<String> {
    let tools = get_json(client, worker, "/tools", session).await;
    tools["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str().map(String::from)).collect()
}

fn config_worker(redis: &Redis, dir: &std::path::Path, toml: &str) -> Worker {
    let config = write_config(dir, toml);
    let url = redis.url();
    Worker::start(
        &[
            ("SWITCHBOARD_REDIS_URL", url.as_str()),
            ("SWITCHBOARD_SECRET_KEY", SECRET_KEY),
            ("SWITCHBOARD_AUTH_STATIC_TOKENS", "demo"),
        ],
        Some(&config),
    )
}

fn demo_server(extra: &str) -> String {
    format!(
        "[servers.default]\ncommand = [\"{}\", \"demo-server\"]\nenv = {{ DEMO_TOKEN = \"{{credentials.token}}\" }}\n{extra}",
        bin()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_read_only_call_is_a_hit_that_spawns_nothing() {
    let redis = Redis::start();
    let worker = Worker::with_redis(&redis, &[]);
    let client = http();
    let session = init(&client, &worker).await;
    list_tools(&client, &worker, &session).await;
    let before = spawns(&client, &worker).await;
    let (status, first) =
        call_tool(&client, &worker, &session, "search_feedback", json!({"query": "slow", "limit": 3})).await;
    assert_eq!(status, 200);
    assert_eq!(first["cached"], json!(false));
    assert_eq!(spawns(&client, &worker).await, before + 1.0);
    let (_, second) =
        call_tool(&client, &worker, &session, "search_feedback", json!({"limit": 3.0, "query": "slow"}))
            .await;
    assert_eq!(second["cached"], json!(true), "{second}");
    assert_eq!(second["result"]["structuredContent"], first["result"]["structuredContent"]);
    assert_eq!(spawns(&client, &worker).await, before + 1.0, "a hit must not spawn");
    // A client can bypass the cache.
    let response = client
        .post(worker.url("/call-tool"))
        .header("Mcp-Session-Id", &session)
        .json(&json!({"tool": "search_feedback", "arguments": {"query": "slow", "limit": 3}, "cache": false}))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["cached"], json!(false));
    assert_eq!(spawns(&client, &worker).await, before + 2.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_identical_concurrent_calls_over_two_workers_spawn_once() {
    let redis = Redis::start();
    let a = Worker::with_redis(&redis, &[]);
    let b = Worker::with_redis(&redis, &[]);
    let client = http();
    let session = init(&client, &a).await;
    list_tools(&client, &a, &session).await;
    list_tools(&client, &b, &session).await;
    let before = spawns(&client, &a).await + spawns(&client, &b).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (client, session) = (client.clone(), session.clone());
        let url = if i % 2 == 0 { a.url("/call-tool") } else { b.url("/call-tool") };
        tasks.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .header("Mcp-Session-Id", session)
                .json(&json!({"tool": "segment_breakdown", "arguments": {"survey": "support-q3"}}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()["result"]["structuredContent"].clone()
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]));
    let after = spawns(&client, &a).await + spawns(&client, &b).await;
    assert_eq!(after - before, 1.0, "20 identical calls must spawn exactly once");
}

#[tokio::test(flavor = "multi_thread")]
async fn never_cached_and_destructive_tools_always_run() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[servers.default]\ncommand = [\"/usr/bin/python3\", \"{}\"]\n[servers.default.tools.lookup]\ncache = \"never\"\n",
        fixture("annotated_server.py")
    );
    let worker = config_worker(&redis, dir.path(), &toml);
    let client = http();
    let session = init(&client, &worker).await;
    assert_eq!(list_tools(&client, &worker, &session).await, ["lookup", "destroy", "clock"]);
    for tool in ["lookup", "destroy", "clock"] {
        let (_, first) = call_tool(&client, &worker, &session, tool, json!({})).await;
        let (_, second) = call_tool(&client, &worker, &session, tool, json!({})).await;
        assert_eq!(second["cached"], json!(false), "{tool} must not be cached");
        assert_ne!(first["result"], second["result"], "{tool} answered from a cache");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jq_filter_shapes_hits_and_misses_while_the_cache_keeps_the_full_result() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    // Plain entries, to read the stored result back (sealed entries: tests/it/abuse/secrets.rs).
    let toml = format!(
        "cache_seal = false\n{}",
        demo_server("[servers.default.tools.survey_summary]\nfilter = \"{nps, responses}\"\n")
    );
    let worker = config_worker(&redis, dir.path(), &toml);
    let client = http();
    let session = init(&client, &worker).await;
    list_tools(&client, &worker, &session).await;
    for expected_cached in [false, true] {
        let (status, body) =
            call_tool(&client, &worker, &session, "survey_summary", json!({"survey": "product-nps-2025"}))
                .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["cached"], json!(expected_cached));
        assert_eq!(body["result"]["structuredContent"], json!({"nps": 25.7, "responses": 140}));
    }
    let cache_key = format!("switchboard:{{{session}}}:cache");
    let stored = redis.cli(&["HGETALL", &cache_key]).unwrap();
    assert!(stored.contains("promoters"), "the cache must hold the full result: {stored}");
}

#[tokio::test(flavor = "multi_thread")]
async fn long_results_are_cut_with_a_marker_and_huge_ones_refused() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let toml =
        demo_server("max_message_bytes = 20000\n[servers.default.tools.echo]\nmax_result_bytes = 600\n");
    let worker = config_worker(&redis, dir.path(), &toml);
    let client = http();
    let session = init(&client, &worker).await;
    let (status, body) =
        call_tool(&client, &worker, &session, "echo", json!({"text": "y".repeat(5000)})).await;
    assert_eq!(status, 200, "{body}");
    let text = body["result"].to_string();
    assert!(text.len() <= 700, "{}", text.len());
    assert!(text.contains("truncated by switchboard"), "{text}");
    let (status, body) =
        call_tool(&client, &worker, &session, "echo", json!({"text": "z".repeat(50_000)})).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "result_too_large");
    let (status, body) = call_tool(&client, &worker, &session, "echo", json!({"text": "fine"})).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["content"][0]["text"], "fine");
}

#[tokio::test(flavor = "multi_thread")]
async fn several_servers_are_merged_and_routed_and_a_broken_one_is_skipped() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let second = match std::env::var_os("SWITCHBOARD_TEST_NPM_DIR") {
        Some(npm) => {
            let entry = std::path::Path::new(&npm)
                .join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
            format!("[servers.everything]\ncommand = [\"node\", \"{}\", \"stdio\"]\n", entry.display())
        }
        None => {
            assert!(std::env::var_os("SWITCHBOARD_TEST_REQUIRE_INTEROP").is_none());
            format!(
                "[servers.everything]\ncommand = [\"/usr/bin/python3\", \"{}\"]\n",
                fixture("annotated_server.py")
            )
        }
    };
    let toml = format!(
        "[servers.demo]\ncommand = [\"{}\", \"demo-server\"]\nenv = {{ DEMO_TOKEN = \"{{credentials.token}}\" }}\n{second}\
         [servers.broken]\ncommand = [\"/nonexistent/mcp-server\"]\n",
        bin()
    );
    let worker = config_worker(&redis, dir.path(), &toml);
    let client = http();
    let session = init(&client, &worker).await;
    let names = list_tools(&client, &worker, &session).await;
    assert!(names.contains(&"demo.survey_summary".to_string()), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("everything.")), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("broken.")));
    let (status, body) = call_tool(&client, &worker, &session, "demo.echo", json!({"text": "to demo"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["content"][0]["text"], "to demo");
    if names.contains(&"everything.echo".to_string()) {
        let (status, body) =
            call_tool(&client, &worker, &session, "everything.echo", json!({"message": "hi"})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["result"]["content"][0]["text"], "Echo: hi");
        let (status, body) =
            call_tool(&client, &worker, &session, "everything.get-sum", json!({"a": 2, "b": 3})).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["result"].to_string().contains('5'), "{body}");
    }
    let (status, body) = call_tool(&client, &worker, &session, "nowhere.echo", json!({})).await;
    assert_eq!(status, 404, "{body}");
}
