//! Abuse findings: quotas. One token must neither exhaust the store nor lock others out:
//! a principal's sessions are capped (its idlest make room), its requests are rate-limited
//! fleet-wide, what a session keeps of the client is bounded, and the embedded store at
//! capacity ends its least recently used sessions instead of refusing everyone.

use std::time::Instant;

use futures_util::StreamExt;
use serde_json::json;

use crate::support::*;

/// Sessions in Redis under the default prefix: the `switchboard:{id}` hashes.
fn sessions_in(redis: &Redis) -> usize {
    redis.keys().iter().filter(|k| k.starts_with("switchboard:{") && k.ends_with('}')).count()
}

/// `used_memory` of INFO memory.
fn used_memory(redis: &Redis) -> u64 {
    let info = redis.cli(&["INFO", "memory"]).expect("INFO memory");
    info.lines().find_map(|l| l.trim().strip_prefix("used_memory:")?.parse().ok()).expect("used_memory")
}

/// The sum of the worker's samples of `metric` whose labels contain `label`.
async fn metric(client: &reqwest::Client, worker: &Worker, metric: &str, label: &str) -> f64 {
    let text =
        client.get(worker.url("/metrics")).send().await.expect("GET /metrics").text().await.expect("text");
    text.lines()
        .filter(|l| l.starts_with(metric) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// POST /init with `body`; the status, the `Retry-After` header and the JSON body.
async fn post_init(
    client: &reqwest::Client,
    worker: &Worker,
    body: &serde_json::Value,
) -> (u16, Option<String>, serde_json::Value) {
    let response = client.post(worker.url("/init")).json(body).send().await.expect("POST /init");
    let status = response.status().as_u16();
    let retry = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(String::from);
    (status, retry, response.json().await.unwrap_or_default())
}

#[tokio::test]
async fn a_flood_of_init_from_one_token_stays_within_its_quota_and_others_keep_working() {
    let redis = Redis::start();
    let worker = Worker::with_redis(
        &redis,
        &[
            ("SWITCHBOARD_AUTH_STATIC_TOKENS", "demo,other"),
            ("SWITCHBOARD_LIMITS_SESSIONS_PER_PRINCIPAL", "20"),
        ],
    );
    let client = http();
    let body = json!({"credentials": {"token": "demo"}});
    let statuses: Vec<(u16, Option<String>, serde_json::Value)> = futures_util::stream::iter(0..100)
        .map(|_| post_init(&client, &worker, &body))
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(statuses.iter().all(|(status, _, _)| *status == 200), "every /init is served: {statuses:?}");
    assert_eq!(sessions_in(&redis), 20, "the principal holds its quota, no more");
    assert_eq!(
        metric(&client, &worker, "switchboard_session_evictions_total", "principal_quota").await,
        80.0
    );
    // The newest session of the flooding token works; another principal is untouched.
    let newest = init(&client, &worker).await;
    let (status, _) = call_tool(&client, &worker, &newest, "echo", json!({"text": "still here"})).await;
    assert_eq!(status, 200);
    let other = init_with(&client, &worker, json!({"token": "other"})).await;
    let (status, _) = call_tool(&client, &worker, &other, "echo", json!({"text": "me too"})).await;
    assert_eq!(status, 200);
    assert_eq!(sessions_in(&redis), 21);
}

#[tokio::test]
async fn big_credentials_are_refused_before_they_reach_the_store() {
    let redis = Redis::start();
    let worker = Worker::with_redis(&redis, &[]);
    let client = http();
    let before = used_memory(&redis);
    // ~900 KB of extra credential fields each: under the body limit, far over 16 KiB.
    let body = json!({"credentials": {"token": "demo", "padding": "x".repeat(900 * 1024)}});
    for _ in 0..40 {
        let (status, _, answer) = post_init(&client, &worker, &body).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (413, Some("credentials_too_large")),
            "{answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("16384 bytes"), "names the limit: {message}");
    }
    let after = used_memory(&redis);
    // Stored, these would be 36 MB; a few MB of slack for Redis's own buffers.
    assert!(after < before + 4 * 1024 * 1024, "Redis grew from {before} to {after} bytes");
    assert_eq!(sessions_in(&redis), 0);
    let big_client = json!({"credentials": {"token": "demo"}, "client": {"name": "x".repeat(20_000)}});
    let (status, _, answer) = post_init(&client, &worker, &big_client).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("client_too_large")), "{answer}");
    // The worker serves the same token at once.
    let id = init(&client, &worker).await;
    assert_eq!(call_tool(&client, &worker, &id, "echo", json!({"text": "ok"})).await.0, 200);
}

#[tokio::test]
async fn a_flooding_principal_is_rate_limited_fleet_wide_while_another_is_served() {
    let redis = Redis::start();
    let env = [
        ("SWITCHBOARD_AUTH_STATIC_TOKENS", "demo,other"),
        ("SWITCHBOARD_LIMITS_REQUESTS_PER_SEC", "5"),
        ("SWITCHBOARD_LIMITS_BURST", "10"),
    ];
    let workers = [Worker::with_redis(&redis, &env), Worker::with_redis(&redis, &env)];
    let client = http();
    let flooder = init(&client, &workers[0]).await;
    let started = Instant::now();
    let answers: Vec<(u16, Option<String>)> = futures_util::stream::iter(0..120)
        .map(|n| {
            let (client, worker, flooder) = (&client, &workers[n % 2], &flooder);
            async move {
                let response = client
                    .get(worker.url("/session"))
                    .header("Mcp-Session-Id", flooder)
                    .send()
                    .await
                    .expect("GET /session");
                let retry =
                    response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(String::from);
                (response.status().as_u16(), retry)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let served = answers.iter().filter(|(status, _)| *status == 200).count();
    let limited: Vec<_> = answers.iter().filter(|(status, _)| *status == 429).collect();
    assert_eq!(served + limited.len(), answers.len(), "only 200 or 429: {answers:?}");
    // One bucket for both workers: the burst (less the /init) plus the rate over the run.
    let allowed = 10.0 + 5.0 * (elapsed + 1.0);
    assert!((served as f64) <= allowed, "{served} served in {elapsed:.1} s, at most {allowed:.0} allowed");
    assert!(!limited.is_empty(), "the flood was limited");
    for (_, retry) in &limited {
        let secs: u64 = retry.as_deref().and_then(|r| r.parse().ok()).expect("Retry-After on every 429");
        assert!(secs >= 1, "{retry:?}");
    }
    // The other principal has its own bucket, on either worker.
    let other = init_with(&client, &workers[1], json!({"token": "other"})).await;
    for worker in &workers {
        let view = get_json(&client, worker, "/session", &other).await;
        assert_eq!(view["session_id"], other.as_str(), "{view}");
    }
    let refusals = metric(&client, &workers[0], "switchboard_refusals_total", "rate_limited").await
        + metric(&client, &workers[1], "switchboard_refusals_total", "rate_limited").await;
    assert_eq!(refusals, limited.len() as f64);
}

#[tokio::test]
async fn the_embedded_store_beyond_its_capacity_evicts_idle_sessions_instead_of_locking_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config =
        write_config(dir.path(), "[limits]\nembedded_max_sessions = 50\nsessions_per_principal = 0\n");
    let worker = Worker::start(&[], Some(&config));
    let client = http();
    let first = init(&client, &worker).await;
    let mut last = first.clone();
    for _ in 0..150 {
        last = init(&client, &worker).await;
    }
    let gone = client.get(worker.url("/session")).header("Mcp-Session-Id", &first).send().await.expect("GET");
    assert_eq!(gone.status().as_u16(), 404, "the idlest session made room");
    assert_eq!(call_tool(&client, &worker, &last, "echo", json!({"text": "in"})).await.0, 200);
    assert!(metric(&client, &worker, "switchboard_session_evictions_total", "lru").await >= 100.0);
}
