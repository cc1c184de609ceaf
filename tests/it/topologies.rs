//! Redis Cluster and Sentinel, started by the project's `deploy/` scripts.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

fn worker_on(url: &str) -> Worker {
    Worker::start(
        &[
            ("SWITCHBOARD_REDIS_URL", url),
            ("SWITCHBOARD_SECRET_KEY", SECRET_KEY),
            ("SWITCHBOARD_AUTH_STATIC_TOKENS", "demo"),
            // The load tests drive thousands of calls a second with one token.
            ("SWITCHBOARD_LIMITS_REQUESTS_PER_SEC", "0"),
        ],
        None,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn every_session_operation_works_on_a_three_master_cluster() {
    let cluster = DeployedRedis::start("redis-cluster.sh");
    let nodes = cluster.vars.get("NODES").expect("NODES").clone();
    let url = format!("redis+cluster://{nodes}");
    let a = worker_on(&url);
    let b = worker_on(&url);
    let client = http();
    let mut sessions = Vec::new();
    for _ in 0..6 {
        sessions.push(init(&client, &a).await);
    }
    for session in &sessions {
        let tools = client.get(b.url("/tools")).header("Mcp-Session-Id", session).send().await.unwrap();
        assert_eq!(tools.status(), 200);
        let (status, first) =
            call_tool(&client, &b, session, "survey_summary", json!({"survey": "support-q3"})).await;
        assert_eq!(status, 200, "{first}");
        let (_, second) =
            call_tool(&client, &a, session, "survey_summary", json!({"survey": "support-q3"})).await;
        assert_eq!(second["cached"], json!(true), "cache hit across workers on a cluster");
        let patched = client
            .patch(a.url("/session"))
            .header("Mcp-Session-Id", session)
            .json(&json!({"step": 2}))
            .send()
            .await
            .unwrap();
        assert_eq!(patched.status(), 200);
    }
    // The sessions are spread over the masters, and each session's keys share its slot.
    let first_node = nodes.split(',').next().unwrap();
    let key = format!("switchboard:{{{}}}", sessions[0]);
    let slot = redis_cli_at(first_node, true, &["CLUSTER", "KEYSLOT", &key]);
    let cache_slot = redis_cli_at(first_node, true, &["CLUSTER", "KEYSLOT", &format!("{key}:cache")]);
    assert_eq!(slot, cache_slot);
    // The admin CLI scans every master.
    let out = std::process::Command::new(bin())
        .args(["sessions", "list", "--json"])
        .env("SWITCHBOARD_REDIS_URL", &url)
        .env("SWITCHBOARD_SECRET_KEY", SECRET_KEY)
        .env("SWITCHBOARD_AUTH_STATIC_TOKENS", "demo")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = String::from_utf8_lossy(&out.stdout);
    for session in &sessions {
        assert!(listed.contains(session.as_str()), "{session} missing from `sessions list`");
    }
    assert!(!listed.contains("\"demo\""), "no credential in the listing");
    let response =
        client.delete(b.url("/session")).header("Mcp-Session-Id", &sessions[0]).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let (status, _) = call_tool(&client, &a, &sessions[0], "echo", json!({"text": "x"})).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_created_before_a_sentinel_failover_keep_working_after_it() {
    let setup = DeployedRedis::start("redis-sentinel.sh");
    let url = setup.vars.get("SWITCHBOARD_REDIS_URL").expect("URL").clone();
    let sentinel = setup.vars.get("SENTINELS").expect("SENTINELS").split(',').next().unwrap().to_string();
    let worker = worker_on(&url);
    let client = http();
    let session = init(&client, &worker).await;
    let (status, _) = call_tool(&client, &worker, &session, "echo", json!({"text": "before"})).await;
    assert_eq!(status, 200);
    let master_before =
        redis_cli_at(&sentinel, false, &["SENTINEL", "get-master-addr-by-name", "switchboard"]);
    // Let the replica catch up (WAIT returns once it acknowledged every write), then fail over.
    let master = master_before.lines().map(str::trim).collect::<Vec<_>>().join(":");
    let acked = redis_cli_at(&master, false, &["WAIT", "1", "5000"]);
    assert_eq!(acked.trim(), "1", "the replica did not catch up");
    let answer = redis_cli_at(&sentinel, false, &["SENTINEL", "FAILOVER", "switchboard"]);
    assert!(answer.contains("OK"), "{answer}");
    let failed_over = eventually(Duration::from_secs(30), || {
        redis_cli_at(&sentinel, false, &["SENTINEL", "get-master-addr-by-name", "switchboard"])
            != master_before
    });
    assert!(failed_over, "the failover did not happen");
    let last = std::cell::RefCell::new(serde_json::Value::Null);
    let served = eventually_async(Duration::from_secs(30), || async {
        let (status, body) = call_tool(&client, &worker, &session, "echo", json!({"text": "after"})).await;
        assert!(
            [200, 503].contains(&status),
            "only 503s are allowed while the worker switches masters: {status} {body}"
        );
        *last.borrow_mut() = body;
        status == 200
    })
    .await;
    assert!(served, "the session did not survive the failover: {}", last.borrow());
    let patched = client
        .patch(worker.url("/session"))
        .header("Mcp-Session-Id", &session)
        .json(&json!({"a": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200, "writes go to the new master");
}

/// One worker, no retrying proxy in front, calls running on 8 connections while the
/// sentinels fail the master over: a command refused as READONLY or cut off by the switch is
/// sent again to the new master inside the worker, so no call fails and every session lives.
#[tokio::test(flavor = "multi_thread")]
async fn a_sentinel_failover_under_load_fails_no_call() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let setup = DeployedRedis::start("redis-sentinel.sh");
    let url = setup.vars.get("SWITCHBOARD_REDIS_URL").expect("URL").clone();
    let sentinel = setup.vars.get("SENTINELS").expect("SENTINELS").split(',').next().unwrap().to_string();
    let worker = Arc::new(worker_on(&url));
    let client = http();
    let mut sessions = Vec::new();
    for _ in 0..20 {
        sessions.push(init(&client, &worker).await);
    }
    let master_addr = || {
        let answer = redis_cli_at(&sentinel, false, &["SENTINEL", "get-master-addr-by-name", "switchboard"]);
        answer.lines().map(str::trim).collect::<Vec<_>>().join(":")
    };
    let old_master = master_addr();
    let acked = redis_cli_at(&old_master, false, &["WAIT", "1", "5000"]);
    assert_eq!(acked.trim(), "1", "the replica did not catch up");

    let sessions = Arc::new(sessions);
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for task in 0..8usize {
        let (client, worker, sessions) = (client.clone(), worker.clone(), sessions.clone());
        let (stop, calls, failures) = (stop.clone(), calls.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            // Bounded in count as well as by the test's own deadline below.
            for n in 0..5_000usize {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let session = &sessions[(task + n * 8) % sessions.len()];
                let (status, body) = if n % 2 == 0 {
                    call_tool(&client, &worker, session, "echo", json!({"text": "load"})).await
                } else {
                    let response = client
                        .patch(worker.url("/session"))
                        .header("Mcp-Session-Id", session)
                        .json(&json!({ "task": task, "n": n }))
                        .send()
                        .await
                        .unwrap();
                    (response.status().as_u16(), response.json().await.unwrap_or_default())
                };
                calls.fetch_add(1, Ordering::Relaxed);
                if status != 200 {
                    failures.lock().unwrap().push(format!("{status} {body}"));
                }
            }
        }));
    }
    // About two seconds in: once calls flow.
    let flowing =
        eventually_async(Duration::from_secs(20), || async { calls.load(Ordering::Relaxed) >= 100 }).await;
    assert!(flowing, "no load");
    let answer = redis_cli_at(&sentinel, false, &["SENTINEL", "FAILOVER", "switchboard"]);
    assert!(answer.contains("OK"), "{answer}");
    // Polled without blocking the runtime the load runs on.
    let switched = eventually_async(Duration::from_secs(30), || async { master_addr() != old_master }).await;
    assert!(switched, "the failover did not happen");
    // The old master turns replica (its writes then answer READONLY); load runs on past that.
    let demoted = eventually_async(Duration::from_secs(30), || async {
        redis_cli_at(&old_master, false, &["ROLE"]).starts_with("slave")
    })
    .await;
    assert!(demoted, "the old master was not reconfigured");
    let at_demotion = calls.load(Ordering::Relaxed);
    let more = eventually_async(Duration::from_secs(20), || async {
        calls.load(Ordering::Relaxed) >= at_demotion + 200
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    assert!(more, "calls stalled after the failover");
    let failed = failures.lock().unwrap().clone();
    let total = calls.load(Ordering::Relaxed);
    assert!(
        failed.is_empty(),
        "{} of {total} calls failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    for session in sessions.iter() {
        let response =
            client.get(worker.url("/session")).header("Mcp-Session-Id", session).send().await.unwrap();
        assert_eq!(response.status(), 200, "session {session} did not survive the failover");
    }
    eprintln!("sentinel failover under load: {total} calls, 0 failed, 20 sessions kept");
}
