//! Records of other versions (issue: rolling upgrades across versions): a record a newer
//! release wrote for old readers too (`compat` unchanged) is served and keeps what this
//! version does not know; one only newer readers can use is refused as version skew and
//! left as it is.

use std::collections::BTreeMap;

use serde_json::json;

use crate::support::*;

/// The session's hash as Redis holds it, field by field.
fn hash(redis: &Redis, session: &str) -> BTreeMap<String, String> {
    let out = redis.cli(&["HGETALL", &format!("switchboard:{{{session}}}")]).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    lines.chunks(2).filter(|p| p.len() == 2).map(|p| (p[0].to_string(), p[1].to_string())).collect()
}

fn hset(redis: &Redis, session: &str, fields: &[&str]) {
    let key = format!("switchboard:{{{session}}}");
    let mut args = vec!["HSET", key.as_str()];
    args.extend_from_slice(fields);
    redis.cli(&args).unwrap();
}

/// PATCH /session `{"step": 2}`; the status.
async fn patch(client: &reqwest::Client, worker: &Worker, session: &str) -> u16 {
    let response = client
        .patch(worker.url("/session"))
        .header("Mcp-Session-Id", session)
        .json(&json!({"step": 2}))
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_newer_record_with_the_same_compat_is_served_and_keeps_the_fields_it_adds() {
    let redis = Redis::start();
    let worker = Worker::with_redis(&redis, &[]);
    let client = http();
    let session = init(&client, &worker).await;
    let written = hash(&redis, &session);
    assert_eq!((written["schema"].as_str(), written["compat"].as_str()), ("1", "1"), "{written:?}");
    // What a later release writes: a higher schema, the same compat, fields unknown here.
    hset(&redis, &session, &["schema", "2", "future_field", "kept", "future_json", r#"{"a":[1]}"#]);

    let (status, first) =
        call_tool(&client, &worker, &session, "survey_summary", json!({"survey": "support-q3"})).await;
    assert_eq!(status, 200, "{first}");
    let (_, second) =
        call_tool(&client, &worker, &session, "survey_summary", json!({"survey": "support-q3"})).await;
    assert_eq!(second["cached"], json!(true), "the cache write went through: {second}");
    assert_eq!(patch(&client, &worker, &session).await, 200);
    let view = get_json(&client, &worker, "/session", &session).await;
    assert_eq!(view["state"]["step"], json!(2), "{view}");

    let after = hash(&redis, &session);
    assert_eq!(after["future_field"], "kept", "{after:?}");
    assert_eq!(after["future_json"], r#"{"a":[1]}"#);
    assert_eq!((after["schema"].as_str(), after["compat"].as_str()), ("2", "1"), "never rewritten");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_only_newer_workers_read_is_version_skew_and_left_untouched() {
    let redis = Redis::start();
    let worker = Worker::with_redis(&redis, &[]);
    let client = http();
    let session = init(&client, &worker).await;
    hset(&redis, &session, &["schema", "3", "compat", "2", "future_field", "x"]);
    let key = format!("switchboard:{{{session}}}");
    // A TTL well below the idle TTL, so a touch would show.
    redis.cli(&["PEXPIRE", &key, "600000"]).unwrap();
    let before = hash(&redis, &session);

    for _ in 0..2 {
        let response = client
            .post(worker.url("/call-tool"))
            .header("Mcp-Session-Id", &session)
            .json(&json!({"tool": "echo", "arguments": {"text": "x"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "store_version_skew", "{body}");
    }
    assert_eq!(patch(&client, &worker, &session).await, 503);

    assert_eq!(hash(&redis, &session), before, "nothing written");
    let ttl: i64 = redis.cli(&["PTTL", &key]).unwrap().trim().parse().unwrap();
    assert!(ttl <= 600_000 && ttl > 0, "the TTL was not reset: {ttl}");
    let metrics = client.get(worker.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(r#"switchboard_store_unreadable_total{kind="session",reason="version_skew"} 3"#),
        "{metrics}"
    );
    assert!(!metrics.contains(r#"kind="corrupt""#), "never counted as corrupt: {metrics}");
}

#[test]
fn the_version_names_the_record_schema_written_and_read() {
    let out = std::process::Command::new(bin()).arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("switchboard "), "{text}");
    assert!(text.contains("record schema written: 1 (compat 1)"), "{text}");
    assert!(text.contains("record schema read: 1 and newer, whose compat is at most 1"), "{text}");
}
