//! The seed's own path, fast (issue 12): results cached from the first call without a prior
//! tool list, and warm starts for servers whose environment carries the session's credentials.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::support::*;

/// A worker config serving the token fixture with `API_TOKEN = {credentials.token}`.
fn token_config(extra: &str) -> String {
    format!(
        "{extra}\n[servers.token]\ncommand = [\"/bin/sh\", \"{}\"]\nenv = {{ API_TOKEN = \"{{credentials.token}}\" }}\n\
         shutdown_grace_secs = 0.5\n",
        fixture("token_server.sh")
    )
}

/// Workers on one Redis, any credentials accepted, with `config` (a TOML text).
fn token_workers(redis: &Redis, dir: &std::path::Path, count: usize, config: &str) -> Vec<Worker> {
    let path = write_config(dir, config);
    (0..count)
        .map(|_| {
            let url = redis.url();
            Worker::start(
                &[
                    ("SWITCHBOARD_REDIS_URL", url.as_str()),
                    ("SWITCHBOARD_SECRET_KEY", SECRET_KEY),
                    ("SWITCHBOARD_AUTH_MODE", "none"),
                ],
                Some(&path),
            )
        })
        .collect()
}

/// One metric of a worker (name with labels as rendered; 0 if absent).
async fn metric(client: &reqwest::Client, worker: &Worker, name: &str) -> f64 {
    let text = client.get(worker.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// `whoami` of the token fixture: (token, pid) of the child that answered.
async fn whoami(client: &reqwest::Client, worker: &Worker, session: &str) -> (String, String) {
    let (status, body) = call_tool(client, worker, session, "whoami", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let text = body["result"]["content"][0]["text"].as_str().unwrap_or_default().to_string();
    let (token, pid) = text.split_once(' ').unwrap_or_default();
    (token.trim_start_matches("token=").to_string(), pid.trim_start_matches("pid=").to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_second_identical_call_is_cached_without_a_prior_tool_list() {
    let redis = Redis::start();
    let worker = Worker::with_redis(&redis, &[]);
    let client = http();
    let session = init(&client, &worker).await;
    let arguments = json!({"text": "hello"});
    let (status, first) = call_tool(&client, &worker, &session, "echo", arguments.clone()).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["cached"], json!(false));
    let (_, second) = call_tool(&client, &worker, &session, "echo", arguments).await;
    assert_eq!(second["cached"], json!(true), "{second}");
    assert_eq!(first["result"]["content"], second["result"]["content"]);
    assert_eq!(spawns(&client, &worker).await, 1.0, "no spawn to learn the policy");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_second_identical_call_on_mcp_is_cached_without_a_prior_tool_list() {
    let redis = Redis::start();
    let worker = Worker::with_redis(&redis, &[]);
    let client = http();
    let post = |session: Option<String>, body: Value| {
        let mut request = client
            .post(worker.url("/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("authorization", "Bearer demo");
        if let Some(s) = session {
            request = request.header("mcp-session-id", s).header("mcp-protocol-version", "2025-11-25");
        }
        request.body(body.to_string()).send()
    };
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "it", "version": "0"}}});
    let response = post(None, init).await.unwrap();
    let session = response.headers()["mcp-session-id"].to_str().unwrap().to_string();
    let _ = response.text().await;
    post(Some(session.clone()), json!({"jsonrpc":"2.0","method":"notifications/initialized"})).await.unwrap();
    let before = spawns(&client, &worker).await;
    let call = |id: u64| {
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
            "params":{"name":"echo","arguments":{"text":"hello"}}})
    };
    let mut results = Vec::new();
    for id in [2, 3] {
        let body = post(Some(session.clone()), call(id)).await.unwrap().text().await.unwrap();
        let line = body.lines().find_map(|l| l.strip_prefix("data:")).unwrap_or(&body).trim().to_string();
        let message: Value = serde_json::from_str(&line).unwrap();
        results.push(message["result"].clone());
    }
    assert!(results[0]["_meta"]["switchboard/cached"].is_null(), "{}", results[0]);
    assert_eq!(results[1]["_meta"]["switchboard/cached"], json!(true), "{}", results[1]);
    assert_eq!(spawns(&client, &worker).await - before, 1.0, "no spawn to learn the policy");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_result_carries_its_own_sessions_token_over_three_warm_workers() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let workers =
        token_workers(&redis, dir.path(), 3, &token_config("max_children = 24\nwarm_max_children = 16"));
    let client = http();
    let sessions: Vec<(String, String)> = futures_util::stream::iter(0..200)
        .map(|i| {
            let (client, worker) = (&client, &workers[i % 3]);
            async move {
                let token = format!("tok-{i}-{}", i * 7919 % 1000);
                (init_with(client, worker, json!({ "token": token })).await, token)
            }
        })
        .buffered(16)
        .collect()
        .await;
    // Sessions interleaved, 12 at a time; each makes 5 calls: two on one worker, two on the
    // next, one on the third (so a warm child started after a call can serve the next).
    let wrong: Vec<String> = futures_util::stream::iter(sessions.iter().enumerate())
        .map(|(i, (session, token))| {
            let (client, workers) = (&client, &workers);
            async move {
                let mut wrong = Vec::new();
                for call in 0..5 {
                    let (got, _) = whoami(client, &workers[(i + call / 2) % 3], session).await;
                    if got != *token {
                        wrong.push(format!("session {i} call {call} got `{got}`, not `{token}`"));
                    }
                }
                wrong
            }
        })
        .buffer_unordered(12)
        .concat()
        .await;
    assert!(wrong.is_empty(), "{wrong:?}");
    let mut hits = 0.0;
    for worker in &workers {
        hits +=
            metric(&client, worker, r#"switchboard_warm_starts_total{server="token",outcome="hit"}"#).await;
    }
    assert!(hits > 0.0, "warm starts were used");
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_session_on_one_worker_drops_its_warm_children_on_every_worker() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let workers = token_workers(&redis, dir.path(), 2, &token_config("max_children = 4"));
    let (a, b) = (&workers[0], &workers[1]);
    let client = http();
    let session = init_with(&client, a, json!({"token": "t"})).await;
    let other = init_with(&client, a, json!({"token": "u"})).await;
    whoami(&client, b, &session).await;
    whoami(&client, b, &other).await;
    let warm = || metric(&client, b, "switchboard_warm_children");
    let mut held = 0.0;
    for _ in 0..100 {
        held = warm().await;
        if held == 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(held, 2.0, "worker B holds a warm child of each session");
    let response = client.delete(a.url("/session")).header("Mcp-Session-Id", &session).send().await.unwrap();
    assert_eq!(response.status(), 200);
    for _ in 0..100 {
        held = warm().await;
        if held == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(held, 1.0, "B dropped the deleted session's child, and only that one");
    assert_eq!(metric(&client, b, r#"switchboard_warm_evictions_total{reason="forgotten"}"#).await, 1.0);
    // The other session still finds its warm child.
    whoami(&client, b, &other).await;
    assert_eq!(
        metric(&client, b, r#"switchboard_warm_starts_total{server="token",outcome="hit"}"#).await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_credentials_change_no_call_sees_the_old_one() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let workers = token_workers(&redis, dir.path(), 1, &token_config("max_children = 4"));
    let worker = &workers[0];
    let client = http();
    let session = init_with(&client, worker, json!({"token": "old"})).await;
    assert_eq!(whoami(&client, worker, &session).await.0, "old");
    // A warm child with the old token is ready now; the credentials change in the store.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sealer = switchboard::crypto::Sealer::from_config(SECRET_KEY, &[]).unwrap();
    let sealed = sealer.seal(br#"{"token":"new"}"#, &session).unwrap();
    let key = format!("switchboard:{{{session}}}");
    redis.cli(&["HSET", &key, "creds", &sealed]).unwrap();
    for _ in 0..3 {
        assert_eq!(whoami(&client, worker, &session).await.0, "new");
    }
    assert!(metric(&client, worker, r#"switchboard_warm_evictions_total{reason="stale"}"#).await >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn warm_bounds_hold_under_a_thousand_sessions_and_drain_leaves_nothing() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let mut workers =
        token_workers(&redis, dir.path(), 1, &token_config("max_children = 4\nwarm_max_children = 3"));
    let worker = &workers[0];
    let client = http();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (client, url, done) = (client.clone(), worker.url("/metrics"), done.clone());
        tokio::spawn(async move {
            let mut most = 0.0f64;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let text = client.get(&url).send().await.unwrap().text().await.unwrap();
                let held = text
                    .lines()
                    .find_map(|l| l.strip_prefix("switchboard_warm_children "))
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .unwrap_or(0.0);
                most = most.max(held);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            most
        })
    };
    let failures: usize = futures_util::stream::iter(0..1000)
        .map(|i| {
            let client = &client;
            async move {
                let session = init_with(client, worker, json!({ "token": format!("bound{i}") })).await;
                let (status, body) = call_tool(client, worker, &session, "whoami", json!({})).await;
                let text = body["result"]["content"][0]["text"].as_str().unwrap_or_default();
                usize::from(status != 200 || !text.starts_with(&format!("token=bound{i} ")))
            }
        })
        .buffer_unordered(3)
        .fold(0, |sum, failed| async move { sum + failed })
        .await;
    assert_eq!(failures, 0);
    assert!(metric(&client, worker, r#"switchboard_warm_evictions_total{reason="count"}"#).await > 0.0);
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let most = sampler.await.unwrap();
    assert!((1.0..=3.0).contains(&most), "at most 3 warm children at any time, saw {most}");
    let pid = workers[0].pid();
    workers[0].stop();
    assert!(eventually(Duration::from_secs(5), || children_of(pid).is_empty()), "children left after drain");
    let leftovers: Vec<u32> = processes()
        .into_iter()
        .filter(|(p, _, _)| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline")).is_ok_and(|c| c.contains("token_server.sh"))
                && std::fs::read_to_string(format!("/proc/{p}/environ"))
                    .is_ok_and(|e| e.contains("API_TOKEN=bound"))
        })
        .map(|(p, _, _)| p)
        .collect();
    assert!(leftovers.is_empty(), "fixture servers left: {leftovers:?}");
    workers.clear();
}
