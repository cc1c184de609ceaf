//! Scale-out and operations: workers behind real nginx, restarts under load.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

/// Three workers on `url` behind nginx; a bounded load (2,000 calls, at most 20 s, 16
/// clients) while one worker is restarted with SIGTERM and another is SIGKILLed and started
/// again, and `midway` runs (a failover, say). Nothing may fail, no session may be lost,
/// no child may be left.
async fn rolling_restart_under_load(url: &str, midway: impl FnOnce()) {
    let env = [
        ("SWITCHBOARD_REDIS_URL", url),
        ("SWITCHBOARD_SECRET_KEY", SECRET_KEY),
        ("SWITCHBOARD_AUTH_STATIC_TOKENS", "demo"),
    ];
    let mut workers: Vec<Worker> = (0..3).map(|_| Worker::start(&env, None)).collect();
    let nginx = Nginx::start(&workers.iter().map(|w| w.port).collect::<Vec<_>>());
    let client = http();
    let base = nginx.url("");
    let mut sessions = Vec::new();
    for _ in 0..16 {
        let response = client
            .post(format!("{base}/init"))
            .json(&json!({"credentials": {"token": "demo"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        sessions.push(body["session_id"].as_str().unwrap().to_string());
    }
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(20);
    let per_task = 2000 / 16;
    let mut tasks = Vec::new();
    for session in sessions.clone() {
        let (client, base, ok, failed) = (client.clone(), base.clone(), ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..per_task {
                if Instant::now() > deadline {
                    break;
                }
                let response = client
                    .post(format!("{base}/call-tool"))
                    .header("Mcp-Session-Id", &session)
                    .json(&json!({"tool": "echo", "arguments": {"text": format!("{i}")}, "cache": false}))
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(r) => {
                        eprintln!("failed call: {} {}", r.status(), r.text().await.unwrap_or_default());
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(e) => {
                        eprintln!("failed call: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    // The restarts happen under load: calls are flowing before the first one...
    let calls = || ok.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed);
    let flowing = eventually_async(Duration::from_secs(10), || async { calls() >= 50 }).await;
    assert!(flowing, "the load did not get going");
    let (first, rest) = workers.split_at_mut(1);
    tokio::task::block_in_place(|| first[0].restart()); // SIGTERM, drain, start again
    // ...and still flowing between the two.
    let before = calls();
    let flowing = eventually_async(Duration::from_secs(10), || async { calls() >= before + 25 }).await;
    assert!(flowing, "the load stopped after the first restart");
    tokio::task::block_in_place(|| {
        rest[0].kill9();
        rest[0].restart();
        midway();
    });
    for task in tasks {
        task.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} calls failed, {ok} succeeded");
    assert!(ok >= 500, "only {ok} calls completed in 20 s");
    for session in &sessions {
        let response =
            client.get(format!("{base}/session")).header("Mcp-Session-Id", session).send().await.unwrap();
        assert_eq!(response.status(), 200, "session lost");
    }
    drop(nginx);
    let pids: Vec<u32> = workers.iter().map(Worker::pid).collect();
    for worker in &mut workers {
        worker.stop();
    }
    for pid in pids {
        assert!(children_of(pid).is_empty(), "worker {pid} left children");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_under_load_behind_nginx_loses_no_call_and_no_session() {
    let redis = Redis::start();
    rolling_restart_under_load(&redis.url(), || {}).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_on_a_redis_cluster_loses_nothing() {
    let cluster = DeployedRedis::start("redis-cluster.sh");
    let url = format!("redis+cluster://{}", cluster.vars["NODES"]);
    rolling_restart_under_load(&url, || {}).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn while_redis_is_down_requests_get_a_quick_503_and_service_resumes_by_itself() {
    let mut redis = Redis::start();
    let worker = Worker::with_redis(&redis, &[]);
    let client = http();
    let session = init(&client, &worker).await;
    redis.stop();
    let started = Instant::now();
    let (status, body) = call_tool(&client, &worker, &session, "echo", json!({"text": "x"})).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "store_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a dead Redis must fail fast, took {:?}",
        started.elapsed()
    );
    let ready = client.get(worker.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let response = client
        .post(worker.url("/init"))
        .json(&json!({"credentials": {"token": "demo"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    // The outage lasts while requests keep failing fast, each failure counted by the store.
    let counted = eventually_async(Duration::from_secs(20), || async {
        let (status, body) = call_tool(&client, &worker, &session, "echo", json!({"text": "x"})).await;
        assert_eq!(status, 503, "{body}");
        store_failures(&client, &worker).await >= 4.0
    })
    .await;
    assert!(counted, "failed store operations are not counted");
    redis.start_again();
    let resumed = eventually_async(Duration::from_secs(10), || async {
        client.get(worker.url("/readyz")).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(resumed, "/readyz did not recover after Redis came back");
    let session = init(&client, &worker).await;
    let (status, _) = call_tool(&client, &worker, &session, "echo", json!({"text": "back"})).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_parse_as_prometheus_text_and_count_the_requests_made() {
    let worker = Worker::start(&[], None);
    let client = http();
    let session = init(&client, &worker).await;
    for _ in 0..3 {
        call_tool(&client, &worker, &session, "echo", json!({"text": "m"})).await;
    }
    let (status, _) = call_tool(&client, &worker, &"x".repeat(43), "echo", json!({})).await;
    assert_eq!(status, 404);
    let text = client.get(worker.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let mut samples = std::collections::HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample line: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
        samples.insert(name.to_string(), value);
    }
    assert!(text.trim_end().ends_with("# EOF"), "OpenMetrics text ends with # EOF");
    let count = |route: &str, status: u16| {
        samples
            .get(&format!("switchboard_http_requests_total{{route=\"{route}\",status=\"{status}\"}}"))
            .copied()
    };
    assert_eq!(count("/init", 200), Some(1.0));
    assert_eq!(count("/call-tool", 200), Some(3.0));
    assert_eq!(count("/call-tool", 404), Some(1.0));
    // The first call learns that echo is read-only: the two others are cache hits.
    assert_eq!(served_by_children(&text), 1.0);
    assert!(samples.contains_key("switchboard_mcp_spawns_total{server=\"default\"}"));
    assert!(samples.get("switchboard_mcp_live_children").is_some_and(|v| (0.0..=3.0).contains(v)));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sessions_command_shows_activity_and_expires_without_printing_credentials() {
    let redis = Redis::start();
    let secret = "tok-never-printed";
    let worker = Worker::with_redis(&redis, &[("SWITCHBOARD_AUTH_STATIC_TOKENS", secret)]);
    let client = http();
    let session = init_with(&client, &worker, json!({"token": secret})).await;
    call_tool(&client, &worker, &session, "echo", json!({"text": "logged"})).await;
    let url = redis.url();
    let run = |args: &[&str]| {
        std::process::Command::new(bin())
            .args(args)
            .env("SWITCHBOARD_REDIS_URL", &url)
            .env("SWITCHBOARD_SECRET_KEY", SECRET_KEY)
            .env("SWITCHBOARD_AUTH_STATIC_TOKENS", secret)
            .output()
            .unwrap()
    };
    // The activity is logged off the response path: wait until it shows.
    let mut shown = String::new();
    eventually(Duration::from_secs(5), || {
        let out = run(&["sessions", "show", &session]);
        assert!(out.status.success(), "sessions show failed: {}", String::from_utf8_lossy(&out.stderr));
        shown = String::from_utf8_lossy(&out.stdout).into_owned();
        shown.contains("default.echo")
    });
    assert!(shown.contains("\"route\": \"/call-tool\"") && shown.contains("default.echo"), "{shown}");
    assert!(!shown.contains(secret), "{shown}");
    let listed = String::from_utf8_lossy(&run(&["sessions", "list"]).stdout).into_owned();
    assert!(listed.contains(&session) && !listed.contains(secret), "{listed}");
    assert!(run(&["sessions", "expire", &session]).status.success());
    let (status, _) = call_tool(&client, &worker, &session, "echo", json!({"text": "x"})).await;
    assert_eq!(status, 404);
    assert!(!run(&["sessions", "expire", &session]).status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn prespawned_children_serve_one_request_each_and_are_reaped_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "max_children = 4\n[servers.default]\ncommand = [\"{}\", \"demo-server\"]\nenv = {{ DEMO_TOKEN = \"fixed\" }}\nprespawn = 2\n",
            bin()
        ),
    );
    let mut worker = Worker::start(&[], Some(&config));
    let pid = worker.pid();
    assert!(
        eventually(Duration::from_secs(10), || children_of(pid).len() == 2),
        "two warm children expected"
    );
    let client = http();
    let session = init(&client, &worker).await;
    let warm_before: Vec<u32> = children_of(pid);
    for i in 0..4 {
        let response = client
            .post(worker.url("/call-tool"))
            .header("Mcp-Session-Id", &session)
            .json(&json!({"tool": "echo", "arguments": {"text": format!("w{i}")}, "cache": false}))
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["result"]["content"][0]["text"], format!("w{i}"));
    }
    let metrics = client.get(worker.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("switchboard_cache_total{op=\"prespawn_hit\"}"), "{metrics}");
    // Each warm child served one request and is gone; the pool was topped up with new ones.
    assert!(eventually(Duration::from_secs(10), || {
        let now = children_of(pid);
        now.len() == 2 && warm_before.iter().all(|p| !now.contains(p))
    }));
    worker.stop();
    assert!(processes().iter().all(|(_, ppid, _)| *ppid != pid));
    for child in warm_before {
        assert!(!std::path::Path::new(&format!("/proc/{child}")).exists());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_with_a_sentinel_failover_midway_loses_nothing() {
    let setup = DeployedRedis::start("redis-sentinel.sh");
    let url = setup.vars["SWITCHBOARD_REDIS_URL"].clone();
    let sentinel = setup.vars["SENTINELS"].split(',').next().unwrap_or_default().to_string();
    rolling_restart_under_load(&url, || {
        let master = redis_cli_at(&sentinel, false, &["SENTINEL", "get-master-addr-by-name", "switchboard"]);
        let answer = redis_cli_at(&sentinel, false, &["SENTINEL", "FAILOVER", "switchboard"]);
        assert!(answer.contains("OK"), "{answer}");
        let moved = eventually(Duration::from_secs(20), || {
            redis_cli_at(&sentinel, false, &["SENTINEL", "get-master-addr-by-name", "switchboard"]) != master
        });
        assert!(moved, "the failover did not happen");
    })
    .await;
}
