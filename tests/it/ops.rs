//! Scale-out and operations: workers behind real nginx, restarts under load.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_under_load_behind_nginx_loses_no_call_and_no_session() {
    let redis = Redis::start();
    let mut workers: Vec<Worker> = (0..3).map(|_| Worker::with_redis(&redis, &[])).collect();
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
    for session in sessions {
        let (client, base, ok, failed) = (client.clone(), base.clone(), ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..per_task {
                if Instant::now() > deadline {
                    break;
                }
                let response = client
                    .post(format!("{base}/call-tool"))
                    .header("Mcp-Session-Id", &session)
                    .json(&json!({"tool": "echo", "arguments": {"text": format!("{i}")}}))
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
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (first, rest) = workers.split_at_mut(1);
    tokio::task::block_in_place(|| first[0].restart()); // SIGTERM, drain, start again
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| {
        rest[0].kill9();
        rest[0].restart();
    });
    for task in tasks {
        task.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} calls failed, {ok} succeeded");
    assert!(ok >= 500, "only {ok} calls completed in 20 s");
    drop(nginx);
    for worker in &mut workers {
        worker.stop();
    }
}
